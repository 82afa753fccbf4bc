//! Skews one process's wall clock without LD_PRELOAD, the way Chaos Mesh's
//! TimeChaos does: every program that reads the time without a system call
//! (glibc, musl, Go, the JVM, static binaries) calls the kernel's vDSO, so
//! the vDSO's `clock_gettime`, `gettimeofday` and `time` are redirected,
//! once, to code of ours in the process that adds an offset read from a
//! page of ours. Later changes are one `process_vm_writev` into that page:
//! no stop, no signal.
//!
//! Attaching stops every thread with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`
//! (never a signal the process could see), makes the process call `mmap`
//! and `mprotect` through a `syscall` instruction of its own vDSO, writes
//! the code and the jumps through `/proc/PID/mem`, restores every register
//! and detaches. The process is stopped for about a millisecond.
//!
//! Only `CLOCK_REALTIME`, `CLOCK_REALTIME_COARSE` and `CLOCK_TAI` (and the
//! two calls built on them) move; every other clock takes the vDSO's own
//! path at the vDSO's speed: the first instructions `clock_gettime`
//! overwrites are copied to our page and run there, so a monotonic read
//! costs one extra jump. When those instructions are not ones this module
//! knows to be position independent, the original is replaced by the
//! system call (correct, slower; `Patched::fast` says which).
//!
//! A forked child inherits the patch and shares the offset page (it is
//! mapped shared); an `exec` maps a fresh vDSO, which must be attached
//! again. A program that makes the clock system call itself (not through
//! the vDSO) is not skewed.
//!
//! Offset page layout (`data`): magic, a slot index, two slots of
//! `{sec, nsec, usec}`: a writer fills the slot not in use and then flips
//! the index, so a reader never sees half an offset, without a lock the
//! process could be stopped holding.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const PAGE: u64 = 4096;
const MAGIC: u64 = u64::from_le_bytes(*b"FLCLOCK1");
const DATA_IDX: u64 = 8;
const DATA_SLOTS: u64 = 64;
const SLOT_BYTES: u64 = 32;
/// The jump written over a vDSO entry: `jmp rel32`.
const JMP_LEN: usize = 5;
/// How long a thread may take to stop, or to step over one instruction.
const STOP_TIMEOUT_MS: u64 = 1_000;
/// Rounds of listing threads until no new one appears.
const THREAD_ROUNDS: usize = 20;
/// Single steps to move a thread out of the bytes being overwritten.
const MAX_STEPS_OUT: usize = 16;
/// How far (bytes) from the vDSO our page may be for a 32-bit jump.
const NEAR: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("clock skew through the vDSO is built for x86-64 only (this is {0})")]
    Arch(&'static str),
    #[error("process {pid} has no vDSO mapped")]
    NoVdso { pid: u32 },
    #[error("process {pid} is gone")]
    Gone { pid: u32 },
    #[error("process {pid}: {what}: {cause}")]
    Os {
        pid: u32,
        what: String,
        cause: io::Error,
    },
    #[error("process {pid}: {what}")]
    Bad { pid: u32, what: String },
}

/// Where a patched process keeps its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patched {
    /// Address of the offset page in the process.
    pub data: u64,
    /// Whether non-skewed clocks keep the vDSO's speed (else they make the
    /// system call).
    pub fast: bool,
    /// Whether this call patched it (false: it already was, by inheritance
    /// from a patched parent or an earlier attach).
    pub new: bool,
}

fn os(pid: u32, what: impl Into<String>) -> impl FnOnce(io::Error) -> AttachError {
    let what = what.into();
    move |cause| {
        if matches!(cause.raw_os_error(), Some(libc::ESRCH | libc::ENOENT)) {
            AttachError::Gone { pid }
        } else {
            AttachError::Os { pid, what, cause }
        }
    }
}

fn bad(pid: u32, what: impl Into<String>) -> AttachError {
    AttachError::Bad {
        pid,
        what: what.into(),
    }
}

/// The vDSO of a process: its address range and the entries we patch.
#[derive(Debug)]
struct Vdso {
    start: u64,
    end: u64,
    clock_gettime: u64,
    gettimeofday: Option<u64>,
    time: Option<u64>,
    /// An address holding the bytes of a `syscall` instruction.
    syscall: u64,
}

/// An address range, [start, end).
type Range = (u64, u64);

/// The start and end of the mapping named `[vdso]`, and every mapping's
/// range (for finding room near it).
fn maps(pid: u32) -> Result<(Option<Range>, Vec<Range>), AttachError> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => AttachError::Gone { pid },
            _ => AttachError::Os {
                pid,
                what: "reading its maps".into(),
                cause: e,
            },
        })?;
    let mut vdso = None;
    let mut all = Vec::new();
    for line in text.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if line.ends_with("[vdso]") {
            vdso = Some((a, b));
        }
        all.push((a, b));
    }
    Ok((vdso, all))
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The offsets (from the image's start) of the dynamic symbols `names` in
/// an ELF64 image, by its section headers (the vDSO keeps them).
pub fn elf_symbols(image: &[u8], names: &[&str]) -> Option<Vec<Option<u64>>> {
    if image.get(..4)? != b"\x7fELF" || image[4] != 2 || image[5] != 1 {
        return None;
    }
    let shoff = u64_at(image, 0x28)? as usize;
    let shentsize = u16_at(image, 0x3A)? as usize;
    let shnum = u16_at(image, 0x3C)? as usize;
    let phoff = u64_at(image, 0x20)? as usize;
    let phentsize = u16_at(image, 0x36)? as usize;
    let phnum = u16_at(image, 0x38)? as usize;
    // Symbol values are link-time addresses: relative to the first PT_LOAD.
    let base = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&h| u32_at(image, h) == Some(1))
        .and_then(|h| u64_at(image, h + 0x10))?;
    let section = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let mut out = vec![None; names.len()];
    for i in 0..shnum {
        let sh = section(i)?;
        if u32_at(image, sh + 4)? != 11 {
            continue; // not SHT_DYNSYM
        }
        let (off, size) = (u64_at(image, sh + 0x18)?, u64_at(image, sh + 0x20)?);
        let strtab = section(u32_at(image, sh + 0x28)? as usize)?;
        let stroff = u64_at(image, strtab + 0x18)? as usize;
        for s in (off..off + size).step_by(24) {
            let s = s as usize;
            let name_at = stroff + u32_at(image, s)? as usize;
            let name = image.get(name_at..)?;
            let name = &name[..name.iter().position(|&c| c == 0)?];
            let value = u64_at(image, s + 8)?;
            for (k, want) in names.iter().enumerate() {
                if name == want.as_bytes() && value != 0 {
                    out[k] = Some(value.checked_sub(base)?);
                }
            }
        }
    }
    Some(out)
}

impl Vdso {
    fn find(pid: u32, mem: &File) -> Result<(Vdso, Vec<(u64, u64)>), AttachError> {
        let (range, all) = maps(pid)?;
        let (start, end) = range.ok_or(AttachError::NoVdso { pid })?;
        let mut image = vec![0u8; (end - start) as usize];
        mem.read_exact_at(&mut image, start)
            .map_err(os(pid, "reading its vDSO"))?;
        let names = ["__vdso_clock_gettime", "__vdso_gettimeofday", "__vdso_time"];
        let syms =
            elf_symbols(&image, &names).ok_or_else(|| bad(pid, "its vDSO is not an ELF image"))?;
        let at = |o: Option<u64>| o.map(|o| start + o).filter(|&a| a + 16 < end);
        let clock_gettime =
            at(syms[0]).ok_or_else(|| bad(pid, "its vDSO has no __vdso_clock_gettime"))?;
        let syscall = image
            .windows(2)
            .position(|w| w == [0x0f, 0x05])
            .map(|o| start + o as u64)
            .ok_or_else(|| bad(pid, "its vDSO holds no syscall instruction"))?;
        let vdso = Vdso {
            start,
            end,
            clock_gettime,
            gettimeofday: at(syms[1]),
            time: at(syms[2]),
            syscall,
        };
        Ok((vdso, all))
    }
}

/// How many leading bytes of `code` are whole instructions that run the
/// same anywhere (no RIP-relative operand, no branch) and cover a jump;
/// `None` when one is not known to be so.
pub fn displaceable(code: &[u8]) -> Option<usize> {
    const REG_OPS: &[u8] = &[
        0x01, 0x03, 0x09, 0x0b, 0x21, 0x23, 0x29, 0x2b, 0x31, 0x33, 0x39, 0x3b, 0x85, 0x89, 0x8b,
    ];
    let mut at = 0;
    while at < JMP_LEN {
        let b = code.get(at..)?;
        let rex = matches!(b.first()?, 0x40..=0x4f);
        let (p, op) = if rex { (1, *b.get(1)?) } else { (0, b[0]) };
        let modrm_reg = |i: usize| b.get(i).is_some_and(|m| m >> 6 == 3);
        let len = match (rex, op) {
            (false, 0xf3) if b.get(..4)? == [0xf3, 0x0f, 0x1e, 0xfa] => 4, // endbr64
            (_, 0x50..=0x57) => p + 1,                                     // push
            (false, 0x90) => 1,
            (false, 0x66) if b.get(1) == Some(&0x90) => 2,
            (_, o) if REG_OPS.contains(&o) && modrm_reg(p + 1) => p + 2,
            (_, 0x83) if modrm_reg(p + 1) => p + 3,
            (_, 0x81) if modrm_reg(p + 1) => p + 6,
            _ => return None,
        };
        at += len;
    }
    Some(at)
}

/// A tiny x86-64 assembler: bytes, labels and 32/8-bit relative fixups.
struct Asm {
    base: u64,
    buf: Vec<u8>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, usize, u8)>,
}

impl Asm {
    fn new(base: u64) -> Asm {
        Asm {
            base,
            buf: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.buf.len());
    }
    fn at(&self) -> u64 {
        self.base + self.buf.len() as u64
    }
    fn b(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    /// `bytes` then a rel32 to label `l`.
    fn rel(&mut self, bytes: &[u8], l: usize) {
        self.b(bytes);
        self.fixups.push((self.buf.len(), l, 4));
        self.b(&[0; 4]);
    }
    fn rel8(&mut self, bytes: &[u8], l: usize) {
        self.b(bytes);
        self.fixups.push((self.buf.len(), l, 1));
        self.b(&[0]);
    }
    /// `bytes` then a rel32 to the absolute address `to`.
    fn abs(&mut self, bytes: &[u8], to: u64) {
        self.b(bytes);
        let rel = to.wrapping_sub(self.at() + 4) as i64;
        let rel = i32::try_from(rel).expect("targets are placed within 2 GiB");
        self.b(&rel.to_le_bytes());
    }
    fn finish(mut self) -> Vec<u8> {
        for (pos, l, width) in std::mem::take(&mut self.fixups) {
            let target = self.labels[l].expect("every label is bound") as i64;
            let rel = target - (pos as i64 + width as i64);
            if width == 4 {
                self.buf[pos..pos + 4].copy_from_slice(&(rel as i32).to_le_bytes());
            } else {
                let rel = i8::try_from(rel).expect("short jumps stay short");
                self.buf[pos] = rel as u8;
            }
        }
        self.buf
    }
}

/// The code page: entries for clock_gettime, gettimeofday and time.
struct Code {
    bytes: Vec<u8>,
    clock_gettime: u64,
    gettimeofday: u64,
    time: u64,
}

/// Builds the code page at `code` for offsets at `data`; `prologue` is
/// the displaced first instructions of the vDSO's clock_gettime at `entry`
/// (`None`: fall back to the system call).
fn build(code: u64, data: u64, entry: u64, prologue: Option<&[u8]>) -> Code {
    let mut a = Asm::new(code);
    let (real, done, orig, nocarry) = (a.label(), a.label(), a.label(), a.label());
    // clock_gettime(edi = clock, rsi = ts)
    let clock_gettime = a.at();
    a.b(&[0x85, 0xff]); // test edi, edi (CLOCK_REALTIME)
    a.rel(&[0x0f, 0x84], real);
    a.b(&[0x83, 0xff, 0x05]); // cmp edi, CLOCK_REALTIME_COARSE
    a.rel(&[0x0f, 0x84], real);
    a.b(&[0x83, 0xff, 0x0b]); // cmp edi, CLOCK_TAI
    a.rel(&[0x0f, 0x84], real);
    a.rel(&[0xe9], orig); // any other clock: the vDSO's own path
    a.bind(real);
    a.b(&[0x56]); // push rsi (keeps the stack 16-aligned for the call)
    a.rel(&[0xe8], orig);
    a.b(&[0x5e]); // pop rsi
    a.b(&[0x85, 0xc0]); // test eax, eax
    a.rel(&[0x0f, 0x85], done);
    a.abs(&[0x48, 0x8b, 0x0d], data + DATA_IDX); // mov rcx, [idx]
    a.b(&[0x83, 0xe1, 0x01, 0xc1, 0xe1, 0x05]); // and ecx, 1; shl ecx, 5
    a.abs(&[0x48, 0x8d, 0x15], data + DATA_SLOTS); // lea rdx, [slots]
    a.b(&[0x48, 0x01, 0xca]); // add rdx, rcx
    a.b(&[0x48, 0x8b, 0x0a, 0x48, 0x01, 0x0e]); // mov rcx,[rdx]; add [rsi],rcx
    a.b(&[0x48, 0x8b, 0x4a, 0x08, 0x48, 0x03, 0x4e, 0x08]); // rcx = slot.nsec + ts.nsec
    a.b(&[0x48, 0x81, 0xf9, 0x00, 0xca, 0x9a, 0x3b]); // cmp rcx, 1e9
    a.rel8(&[0x7c], nocarry);
    a.b(&[0x48, 0x81, 0xe9, 0x00, 0xca, 0x9a, 0x3b]); // sub rcx, 1e9
    a.b(&[0x48, 0xff, 0x06]); // inc qword [rsi]
    a.bind(nocarry);
    a.b(&[0x48, 0x89, 0x4e, 0x08]); // mov [rsi+8], rcx
    a.bind(done);
    a.b(&[0xc3]);
    a.bind(orig);
    match prologue {
        Some(p) => {
            a.b(p);
            a.abs(&[0xe9], entry + p.len() as u64);
        }
        // mov eax, SYS_clock_gettime; syscall; ret
        None => a.b(&[0xb8, 0xe4, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xc3]),
    }
    let cg = a.label();
    a.labels[cg] = Some((clock_gettime - code) as usize);
    // gettimeofday(rdi = tv, rsi = tz): tz from the system call, tv from
    // our clock_gettime.
    let gettimeofday = a.at();
    let (notz, out) = (a.label(), a.label());
    a.b(&[0x57, 0x48, 0x85, 0xf6]); // push rdi; test rsi, rsi
    a.rel8(&[0x74], notz);
    a.b(&[0x31, 0xff, 0xb8, 0x60, 0, 0, 0, 0x0f, 0x05]); // gettimeofday(NULL, tz)
    a.bind(notz);
    a.b(&[0x48, 0x8b, 0x3c, 0x24, 0x48, 0x85, 0xff]); // mov rdi,[rsp]; test rdi,rdi
    a.rel8(&[0x74], out);
    a.b(&[0x48, 0x83, 0xec, 0x10, 0x31, 0xff, 0x48, 0x89, 0xe6]); // ts on the stack, REALTIME
    a.rel(&[0xe8], cg);
    a.b(&[0x48, 0x8b, 0x0c, 0x24, 0x48, 0x8b, 0x44, 0x24, 0x08]); // rcx = sec, rax = nsec
    a.b(&[0x31, 0xd2, 0x41, 0xb8, 0xe8, 0x03, 0, 0, 0x49, 0xf7, 0xf0]); // rax /= 1000
    a.b(&[0x48, 0x83, 0xc4, 0x10, 0x48, 0x8b, 0x3c, 0x24]); // drop ts; rdi = tv
    a.b(&[0x48, 0x89, 0x0f, 0x48, 0x89, 0x47, 0x08]); // tv = {sec, usec}
    a.bind(out);
    a.b(&[0x5f, 0x31, 0xc0, 0xc3]); // pop rdi; return 0
                                    // time(rdi = tloc): seconds of CLOCK_REALTIME_COARSE, as the vDSO's.
    let time = a.at();
    let none = a.label();
    a.b(&[
        0x57, 0x48, 0x83, 0xec, 0x10, 0xbf, 0x05, 0, 0, 0, 0x48, 0x89, 0xe6,
    ]);
    a.rel(&[0xe8], cg);
    a.b(&[
        0x48, 0x8b, 0x04, 0x24, 0x48, 0x83, 0xc4, 0x10, 0x5f, 0x48, 0x85, 0xff,
    ]);
    a.rel8(&[0x74], none);
    a.b(&[0x48, 0x89, 0x07]); // *tloc = rax
    a.bind(none);
    a.b(&[0xc3]);
    Code {
        bytes: a.finish(),
        clock_gettime,
        gettimeofday,
        time,
    }
}

/// An offset as the page holds it: whole seconds (floor) and the rest.
fn slot(offset_ns: i64) -> [u8; SLOT_BYTES as usize] {
    let sec = offset_ns.div_euclid(1_000_000_000);
    let nsec = offset_ns.rem_euclid(1_000_000_000);
    let mut s = [0u8; SLOT_BYTES as usize];
    s[..8].copy_from_slice(&sec.to_le_bytes());
    s[8..16].copy_from_slice(&nsec.to_le_bytes());
    s[16..24].copy_from_slice(&(nsec / 1000).to_le_bytes());
    s
}

fn vm_io(pid: u32, addr: u64, buf: &mut [u8], write: bool) -> io::Result<()> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` points at `buf`, alive for the call; the remote side
    // is checked by the kernel.
    let n = unsafe {
        if write {
            libc::process_vm_writev(pid as i32, &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0)
        }
    };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        n if n as usize != buf.len() => Err(io::Error::other("short transfer")),
        _ => Ok(()),
    }
}

/// Whether `data` is still our offset page in `pid`: an `exec` replaces
/// the whole image (same pid, same start time), and the new one must be
/// attached afresh.
pub fn still_patched(pid: u32, data: u64) -> bool {
    let mut magic = [0u8; 8];
    vm_io(pid, data, &mut magic, false).is_ok() && u64::from_le_bytes(magic) == MAGIC
}

/// Sets the offset a patched process adds to its wall clock; errs (and
/// writes nothing) when `data` is no longer our page there.
pub fn set_offset(pid: u32, data: u64, offset_ns: i64) -> io::Result<()> {
    if !still_patched(pid, data) {
        return Err(io::Error::other(
            "its image changed (exec) since it was patched",
        ));
    }
    let mut idx = [0u8; 8];
    vm_io(pid, data + DATA_IDX, &mut idx, false)?;
    let next = (u64::from_le_bytes(idx) & 1) ^ 1;
    let mut s = slot(offset_ns);
    vm_io(pid, data + DATA_SLOTS + next * SLOT_BYTES, &mut s, true)?;
    vm_io(pid, data + DATA_IDX, &mut next.to_le_bytes(), true)
}

/// The offset a patched process adds now.
pub fn offset(pid: u32, data: u64) -> io::Result<i64> {
    let mut idx = [0u8; 8];
    vm_io(pid, data + DATA_IDX, &mut idx, false)?;
    let mut s = [0u8; 16];
    let at = data + DATA_SLOTS + (u64::from_le_bytes(idx) & 1) * SLOT_BYTES;
    vm_io(pid, at, &mut s, false)?;
    let sec = i64::from_le_bytes(s[..8].try_into().expect("8 bytes"));
    let nsec = i64::from_le_bytes(s[8..].try_into().expect("8 bytes"));
    Ok(sec * 1_000_000_000 + nsec)
}

/// Lets go of threads whose attach gave up before they stopped, once
/// they have (see `ptrace::release_stuck`); call from the attaching
/// thread. Returns how many are still held.
pub fn release_stuck() -> usize {
    ptrace::release_stuck()
}

/// The offset page of a process whose vDSO already jumps to our code (a
/// forked child of a patched process, or one attached before).
pub fn patched(pid: u32) -> Result<Option<u64>, AttachError> {
    let mem = File::open(format!("/proc/{pid}/mem")).map_err(os(pid, "opening its memory"))?;
    let (vdso, _) = Vdso::find(pid, &mem)?;
    patched_in(pid, &mem, &vdso)
}

fn patched_in(pid: u32, mem: &File, vdso: &Vdso) -> Result<Option<u64>, AttachError> {
    let mut head = [0u8; JMP_LEN];
    mem.read_exact_at(&mut head, vdso.clock_gettime)
        .map_err(os(pid, "reading its vDSO"))?;
    if head[0] != 0xe9 {
        return Ok(None);
    }
    let rel = i32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as i64;
    let target = (vdso.clock_gettime as i64 + JMP_LEN as i64 + rel) as u64;
    let data = (target & !(PAGE - 1)).wrapping_sub(PAGE);
    let mut magic = [0u8; 8];
    Ok(mem
        .read_exact_at(&mut magic, data)
        .ok()
        .filter(|_| u64::from_le_bytes(magic) == MAGIC)
        .map(|_| data))
}

/// Patches `pid`'s vDSO (unless it already is) so that its wall clock
/// reads `offset_ns` ahead; returns where the offset lives.
pub fn attach(pid: u32, offset_ns: i64) -> Result<Patched, AttachError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(AttachError::Arch(std::env::consts::ARCH));
    }
    let mem = open_mem(pid)?;
    let (vdso, _) = Vdso::find(pid, &mem)?;
    if let Some(p) = already(pid, &mem, &vdso, offset_ns)? {
        return Ok(p);
    }
    let mut stopped = ptrace::Stopped::seize(pid)?;
    patch(pid, &mem, &mut stopped, offset_ns)
}

/// Patches a process this thread has seized and that is stopped at its
/// `exec` (PTRACE_EVENT_EXEC): its new image, before its first
/// instruction. It stays seized and stopped; returns with the patch a
/// signal that arrived meanwhile (0: none), for the caller to deliver.
pub fn patch_at_exec(pid: u32, offset_ns: i64) -> Result<(Patched, i32), AttachError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(AttachError::Arch(std::env::consts::ARCH));
    }
    let mem = open_mem(pid)?;
    let mut stopped = ptrace::Stopped::adopt(pid);
    let patched = patch(pid, &mem, &mut stopped, offset_ns)?;
    Ok((patched, stopped.take_signal()))
}

fn open_mem(pid: u32) -> Result<File, AttachError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(os(pid, "opening its memory"))
}

/// A process already patched gets the offset only.
fn already(
    pid: u32,
    mem: &File,
    vdso: &Vdso,
    offset_ns: i64,
) -> Result<Option<Patched>, AttachError> {
    let Some(data) = patched_in(pid, mem, vdso)? else {
        return Ok(None);
    };
    set_offset(pid, data, offset_ns).map_err(os(pid, "writing its clock offset"))?;
    Ok(Some(Patched {
        data,
        fast: true,
        new: false,
    }))
}

/// Patches a stopped process: our pages mapped, code and offset written,
/// the vDSO's entries made to jump there.
fn patch(
    pid: u32,
    mem: &File,
    stopped: &mut ptrace::Stopped,
    offset_ns: i64,
) -> Result<Patched, AttachError> {
    // Listed again with every thread stopped: nothing can change now.
    let (vdso, all) = Vdso::find(pid, mem)?;
    if let Some(p) = already(pid, mem, &vdso, offset_ns)? {
        return Ok(p);
    }
    let base = map_near(pid, stopped, &vdso, &all)?;
    let (data, code) = (base, base + PAGE);
    let mut head = [0u8; 32];
    mem.read_exact_at(&mut head, vdso.clock_gettime)
        .map_err(os(pid, "reading its vDSO"))?;
    let len = displaceable(&head);
    let built = build(code, data, vdso.clock_gettime, len.map(|n| &head[..n]));
    let mut page = vec![0u8; PAGE as usize];
    page[..8].copy_from_slice(&MAGIC.to_le_bytes());
    page[DATA_SLOTS as usize..(DATA_SLOTS + SLOT_BYTES) as usize].copy_from_slice(&slot(offset_ns));
    mem.write_all_at(&page, data)
        .map_err(os(pid, "writing its offset page"))?;
    mem.write_all_at(&built.bytes, code)
        .map_err(os(pid, "writing its clock code"))?;
    let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let r = stopped.syscall(
        vdso.syscall,
        libc::SYS_mprotect as u64,
        [code, PAGE, prot, 0, 0, 0],
    )?;
    if r != 0 {
        return Err(bad(pid, format!("mprotect of its clock code failed ({r})")));
    }
    let mut jumps = vec![(
        vdso.clock_gettime,
        built.clock_gettime,
        len.unwrap_or(JMP_LEN),
    )];
    jumps.extend(vdso.gettimeofday.map(|e| (e, built.gettimeofday, JMP_LEN)));
    jumps.extend(vdso.time.map(|e| (e, built.time, JMP_LEN)));
    for &(entry, _, covered) in &jumps {
        stopped.step_out_of(entry + 1, entry + covered as u64)?;
    }
    for (entry, to, _) in jumps {
        let mut jmp = [0xe9, 0, 0, 0, 0];
        let rel = i32::try_from(to as i64 - (entry as i64 + JMP_LEN as i64))
            .map_err(|_| bad(pid, "our page ended up out of jump range"))?;
        jmp[1..].copy_from_slice(&rel.to_le_bytes());
        mem.write_all_at(&jmp, entry)
            .map_err(os(pid, "patching its vDSO"))?;
    }
    Ok(Patched {
        data,
        fast: len.is_some(),
        new: true,
    })
}

/// Maps our two pages (offset page, code page) in the process, within a
/// 32-bit jump of its vDSO: at the free gap nearest to it.
fn map_near(
    pid: u32,
    stopped: &mut ptrace::Stopped,
    vdso: &Vdso,
    all: &[(u64, u64)],
) -> Result<u64, AttachError> {
    let size = 2 * PAGE;
    let mut sorted = all.to_vec();
    sorted.sort_unstable();
    let mut candidates = Vec::new();
    for w in sorted.windows(2) {
        let (gap_start, gap_end) = (w[0].1, w[1].0);
        if gap_end >= gap_start + size {
            // The end of a gap below the vDSO, the start of one above it.
            candidates.push(if gap_end <= vdso.start {
                gap_end - size
            } else {
                gap_start
            });
        }
    }
    candidates.retain(|&c| c.abs_diff(vdso.start) < NEAR && c.abs_diff(vdso.end) < NEAR);
    candidates.sort_unstable_by_key(|&c| c.abs_diff(vdso.start));
    const MAP_FIXED_NOREPLACE: u64 = 0x100000;
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64 | MAP_FIXED_NOREPLACE;
    for hint in candidates.into_iter().take(4) {
        let r = stopped.syscall(
            vdso.syscall,
            libc::SYS_mmap as u64,
            [hint, size, prot, flags, u64::MAX, 0],
        )?;
        if r == hint as i64 {
            return Ok(hint);
        }
        if r > 0 {
            // A kernel that ignores the flag mapped it elsewhere.
            stopped.syscall(
                vdso.syscall,
                libc::SYS_munmap as u64,
                [r as u64, size, 0, 0, 0, 0],
            )?;
        }
    }
    Err(bad(pid, "no free room within 1 GiB of its vDSO"))
}

/// Stopping every thread of a process, running a system call in it, and
/// letting it go with every register as it was.
mod ptrace {
    use super::{os, AttachError, MAX_STEPS_OUT, STOP_TIMEOUT_MS, THREAD_ROUNDS};
    use std::io;
    use std::time::{Duration, Instant};

    fn call(req: libc::c_uint, tid: i32, addr: u64, data: u64) -> io::Result<i64> {
        // SAFETY: requests that read or write a tracee's state (or ours
        // through `data`, which points at a live value when it is a buffer).
        let r = unsafe {
            libc::ptrace(
                req,
                tid,
                addr as *mut libc::c_void,
                data as *mut libc::c_void,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    pub struct Stopped {
        pid: u32,
        tids: Vec<i32>,
        /// Whether we seized them (and so detach them when done).
        owned: bool,
        /// Threads seized that did not stop in time (see `STUCK`).
        unstopped: Vec<i32>,
        /// Registers of the thread we ran system calls in, to restore.
        saved: Option<(i32, libc::user_regs_struct)>,
        /// Signals a thread stopped for while we held it: delivered at
        /// detach, so the process loses none.
        pending: Vec<(i32, i32)>,
    }

    enum Stop {
        /// Our interrupt, a step's trap, or another ptrace event.
        Trap,
        Signal(i32),
        Gone,
    }

    /// Waits (bounded) until `tid` stops or ends.
    fn wait(pid: u32, tid: i32) -> Result<Stop, AttachError> {
        let end = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a pointer to a local.
            let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
            if r < 0 {
                return Ok(Stop::Gone);
            }
            if r == tid {
                if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                    return Ok(Stop::Gone);
                }
                let sig = libc::WSTOPSIG(status);
                return Ok(if sig == libc::SIGTRAP || status >> 16 != 0 {
                    Stop::Trap
                } else {
                    Stop::Signal(sig)
                });
            }
            if Instant::now() > end {
                return Err(AttachError::Bad {
                    pid,
                    what: format!(
                        "thread {tid} did not stop within {STOP_TIMEOUT_MS} ms (frozen?)"
                    ),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    impl Stopped {
        /// Seizes and stops every thread, until no new one appears.
        pub fn seize(pid: u32) -> Result<Stopped, AttachError> {
            let mut s = Stopped {
                pid,
                tids: Vec::new(),
                owned: true,
                unstopped: Vec::new(),
                saved: None,
                pending: Vec::new(),
            };
            for _ in 0..THREAD_ROUNDS {
                let listed = threads(pid)?;
                let new: Vec<i32> = listed.into_iter().filter(|t| !s.tids.contains(t)).collect();
                if new.is_empty() {
                    if s.tids.is_empty() {
                        return Err(AttachError::Gone { pid });
                    }
                    return Ok(s);
                }
                for tid in new {
                    match call(libc::PTRACE_SEIZE, tid, 0, 0) {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => continue,
                        Err(e) => return Err(os(pid, format!("PTRACE_SEIZE of thread {tid}"))(e)),
                    }
                    s.tids.push(tid);
                    if let Err(e) = call(libc::PTRACE_INTERRUPT, tid, 0, 0) {
                        s.tids.retain(|&t| t != tid);
                        s.unstopped.push(tid);
                        return Err(os(pid, "PTRACE_INTERRUPT")(e));
                    }
                    match wait(pid, tid) {
                        Ok(Stop::Trap) => {}
                        Ok(Stop::Signal(sig)) => s.pending.push((tid, sig)),
                        Ok(Stop::Gone) => s.tids.retain(|&t| t != tid),
                        Err(e) => {
                            // In uninterruptible sleep, or frozen: it stops
                            // when it can, and must be let go then.
                            s.tids.retain(|&t| t != tid);
                            s.unstopped.push(tid);
                            return Err(e);
                        }
                    }
                }
            }
            Err(AttachError::Bad {
                pid,
                what: format!("its threads kept multiplying over {THREAD_ROUNDS} rounds"),
            })
        }

        /// A process the caller has seized and stopped (one thread, as
        /// at an exec): registers are restored when done, nothing detached.
        pub fn adopt(pid: u32) -> Stopped {
            Stopped {
                pid,
                tids: vec![pid as i32],
                owned: false,
                unstopped: Vec::new(),
                saved: None,
                pending: Vec::new(),
            }
        }

        /// A signal a thread stopped for while we held it (0: none).
        pub fn take_signal(&mut self) -> i32 {
            self.pending.pop().map_or(0, |(_, sig)| sig)
        }

        fn regs(&self, tid: i32) -> Result<libc::user_regs_struct, AttachError> {
            // SAFETY: user_regs_struct is plain data; zeroed is valid.
            let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
            call(libc::PTRACE_GETREGS, tid, 0, &mut r as *mut _ as u64)
                .map_err(os(self.pid, "PTRACE_GETREGS"))?;
            Ok(r)
        }

        fn set_regs(&self, tid: i32, r: &libc::user_regs_struct) -> Result<(), AttachError> {
            call(libc::PTRACE_SETREGS, tid, 0, r as *const _ as u64)
                .map_err(os(self.pid, "PTRACE_SETREGS"))?;
            Ok(())
        }

        /// Executes one instruction of `tid`; errs if it did not get to.
        fn step(&mut self, tid: i32) -> Result<(), AttachError> {
            for _ in 0..4 {
                call(libc::PTRACE_SINGLESTEP, tid, 0, 0)
                    .map_err(os(self.pid, "PTRACE_SINGLESTEP"))?;
                match wait(self.pid, tid)? {
                    Stop::Trap => return Ok(()),
                    // A signal arrived first: keep it for the detach, step again.
                    Stop::Signal(sig) => self.pending.push((tid, sig)),
                    Stop::Gone => return Err(AttachError::Gone { pid: self.pid }),
                }
            }
            Err(AttachError::Bad {
                pid: self.pid,
                what: "a single step kept being preempted by signals".into(),
            })
        }

        /// Runs system call `nr` in the process, at the `syscall`
        /// instruction at `at`; returns what it returned.
        pub fn syscall(&mut self, at: u64, nr: u64, args: [u64; 6]) -> Result<i64, AttachError> {
            let tid = if self.tids.contains(&(self.pid as i32)) {
                self.pid as i32
            } else {
                self.tids[0]
            };
            let saved = match self.saved {
                Some((_, r)) => r,
                None => {
                    let r = self.regs(tid)?;
                    self.saved = Some((tid, r));
                    r
                }
            };
            let mut r = saved;
            r.rip = at;
            r.rax = nr;
            // Not inside a system call: no restart logic may touch ours.
            r.orig_rax = u64::MAX;
            (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) =
                (args[0], args[1], args[2], args[3], args[4], args[5]);
            self.set_regs(tid, &r)?;
            for _ in 0..4 {
                self.step(tid)?;
                let after = self.regs(tid)?;
                if after.rip == at + 2 {
                    return Ok(after.rax as i64);
                }
                if after.rip != at {
                    break;
                }
            }
            Err(AttachError::Bad {
                pid: self.pid,
                what: "an injected system call did not run".into(),
            })
        }

        /// Steps every thread whose next instruction lies in `[from, to)`
        /// until it is out (those bytes are about to be overwritten).
        pub fn step_out_of(&mut self, from: u64, to: u64) -> Result<(), AttachError> {
            for tid in self.tids.clone() {
                for _ in 0..MAX_STEPS_OUT {
                    let rip = match self.saved {
                        Some((t, r)) if t == tid => r.rip,
                        _ => self.regs(tid)?.rip,
                    };
                    if !(from..to).contains(&rip) {
                        break;
                    }
                    if self.saved.is_some_and(|(t, _)| t == tid) {
                        // Restore first: that thread's real state must move on.
                        let (_, r) = self.saved.take().expect("checked");
                        self.set_regs(tid, &r)?;
                    }
                    self.step(tid)?;
                }
            }
            Ok(())
        }
    }

    impl Drop for Stopped {
        fn drop(&mut self) {
            if let Some((tid, r)) = self.saved.take() {
                let _ = self.set_regs(tid, &r);
            }
            STUCK
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(self.unstopped.drain(..));
            if !self.owned {
                return;
            }
            for &tid in &self.tids {
                let sig = self
                    .pending
                    .iter()
                    .find(|(t, _)| *t == tid)
                    .map_or(0, |(_, s)| *s);
                let _ = call(libc::PTRACE_DETACH, tid, 0, sig as u64);
            }
        }
    }

    /// Threads seized whose stop had not come when their attach gave up:
    /// still traced by the thread that seized them, which lets each go
    /// once it stops (`release_stuck`), or the tracer's exit does.
    static STUCK: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

    /// Lets go of every stuck thread that has stopped since (call from
    /// the thread that attaches); returns how many are still held.
    pub fn release_stuck() -> usize {
        let mut stuck = STUCK.lock().unwrap_or_else(|e| e.into_inner());
        stuck.retain(|&tid| {
            let mut status = 0;
            // SAFETY: waitpid into a local.
            let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
            if r == 0 {
                return true;
            }
            if r == tid && libc::WIFSTOPPED(status) {
                let sig = match (libc::WSTOPSIG(status), status >> 16) {
                    (sig, 0) if sig != libc::SIGTRAP => sig,
                    _ => 0,
                };
                let _ = call(libc::PTRACE_DETACH, tid, 0, sig as u64);
            }
            false
        });
        stuck.len()
    }

    fn threads(pid: u32) -> Result<Vec<i32>, AttachError> {
        let dir = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                AttachError::Gone { pid }
            } else {
                os(pid, "listing its threads")(e)
            }
        })?;
        Ok(dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect())
    }
}

#[cfg(test)]
mod tests;
