//! The standalone `target-node` binary.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdin = std::io::BufReader::new(std::io::stdin());
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    if let Err(e) = target_node::run(stdin, stdout, &args) {
        eprintln!("target-node: {e}");
        std::process::exit(2);
    }
}
