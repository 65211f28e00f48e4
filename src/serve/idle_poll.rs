//! Idle polling: while the server runs, idle cores poll instead of halting, through the kernel's PM QoS
//! interface for applications (Documentation/power/pm_qos_interface.rst): a process that writes a CPU
//! wake-up latency of 0 µs to `/dev/cpu_dma_latency` keeps cpuidle in its polling state for as long as it
//! holds the file open. A halted vCPU takes tens of µs to wake, and a ranking request pays that on each
//! hop; unlike `idle_spin`, the kernel's poll loop counts as idle time, so CPU accounting stays true. The
//! kernel drops the request when the file closes — on exit, a crash or SIGKILL alike — so the host never
//! keeps the setting after the server is gone. It applies to every core of the host (root only).
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The kernel's system-wide CPU latency QoS device.
pub const CPU_LATENCY_DEVICE: &str = "/dev/cpu_dma_latency";

/// An open PM QoS request for 0 µs wake-up latency; dropping it ends the request.
#[derive(Debug)]
pub struct IdlePoll {
    _request: File,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "idle_poll: cannot hold {device} at 0 µs: {error} (opening it needs root, and in a container the \
     device passed in; or set idle_poll = false)"
)]
pub struct IdlePollError {
    device: String,
    error: std::io::Error,
}

/// Asks the kernel, through `device` (normally [`CPU_LATENCY_DEVICE`]), for 0 µs CPU wake-up latency until
/// the returned value is dropped.
pub fn hold(device: &Path) -> Result<IdlePoll, IdlePollError> {
    let fail = |error| IdlePollError { device: device.display().to_string(), error };
    let mut request = File::options().write(true).open(device).map_err(fail)?;
    // The interface takes a native-endian s32 of microseconds (a hex string is accepted too).
    request.write_all(&0i32.to_ne_bytes()).map_err(fail)?;
    Ok(IdlePoll { _request: request })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The system's current CPU wake-up latency target in µs (the smallest any holder asked for).
    fn current_target(device: &Path) -> std::io::Result<i32> {
        let mut value = [0u8; 4];
        File::open(device)?.read_exact(&mut value)?;
        Ok(i32::from_ne_bytes(value))
    }

    /// As root on a host with the device: the target is 0 while held and back to what it was once dropped.
    /// Elsewhere: a clear error naming the device, not a panic.
    #[test]
    fn holds_zero_latency_until_dropped() {
        let device = Path::new(CPU_LATENCY_DEVICE);
        let before = current_target(device);
        match hold(device) {
            Ok(held) => {
                assert_eq!(current_target(device).unwrap(), 0);
                drop(held);
                assert_eq!(current_target(device).unwrap(), before.unwrap(), "target not restored");
            }
            Err(e) => {
                assert!(e.to_string().contains(CPU_LATENCY_DEVICE), "{e}");
                assert!(!is_root() || !device.exists(), "root with the device present, yet: {e}");
            }
        }
    }

    /// A path that is not a PM QoS device fails with its name in the message.
    #[test]
    fn missing_device_is_a_named_error() {
        let e = hold(Path::new("/nonexistent/cpu_dma_latency")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cpu_dma_latency"), "{e}");
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
}
