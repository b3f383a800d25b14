//! CPU time of processes and threads from /proc, for the benchmarks that report what `noded`
//! spent (`p2p`, `txrelay`, `sync`). Included with `#[path]`; reads, asserts nothing.

use std::path::Path;
use std::process::Command;

/// Linux's `USER_HZ` (`getconf CLK_TCK`; 100 if that cannot be read): the unit of a stat
/// file's times, so a difference of two readings is good to one tick a process.
pub fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime in seconds from a /proc `stat` file, and the `comm` it names. A process's
/// file counts its exited threads too (the chain's verifier runs each batch on threads that
/// end with it).
pub fn stat_cpu(path: &Path) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / clock_ticks_per_second()))
}

/// CPU seconds the process `pid` has used so far (0 if it is gone).
pub fn process_cpu(pid: u32) -> f64 {
    stat_cpu(Path::new(&format!("/proc/{pid}/stat"))).map_or(0.0, |(_, s)| s)
}
