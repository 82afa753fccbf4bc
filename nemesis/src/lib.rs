//! The fault vocabulary, seeded fault schedules, and the executors that
//! apply a fault to processes, links and clocks. Not yet implemented: the
//! harness's router already exposes the per-link policy the executors will
//! drive (`faultline::net::LinkPolicy`).
