import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The signals that stop a FUSE server: blocked in every thread (`block()` first thing in
/// `main`, before any thread exists) and taken by `serveUntilUnmounted` with sigtimedwait, so
/// no handler ever runs on a libfuse worker.
public enum StopSignals {
    public static let all = [SIGINT, SIGTERM, SIGHUP]

    public static func block() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in all { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }
}

/// Serves a mounted session until it is unmounted: SIGINT/SIGTERM/SIGHUP (blocked in every
/// thread, see `StopSignals`) try a non-lazy unmount, which fails while a loop device or
/// an open file uses the filesystem. Then serving goes on and the unmount is retried for
/// `busyGrace` — a loop device detached just before the signal is often still held for a
/// moment (udev probes it, the kernel clears it lazily) — after which the stop is given up and
/// the next signal tries again. `fusermount3 -u` from outside ends it too. `tick` runs about
/// four times a second.
public func serveUntilUnmounted(_ session: FUSESession, mountpoint: String, logger: Logger, tick: () -> Void) {
    let busyGrace: TimeInterval = 5
    var set = sigset_t()
    sigemptyset(&set)
    for s in StopSignals.all { sigaddset(&set, s) }
    var retryStopUntil: Date?
    while !session.isFinished {
        var timeout = timespec(tv_sec: 0, tv_nsec: 250_000_000)
        let signal = sigtimedwait(&set, nil, &timeout)
        if signal > 0 || retryStopUntil != nil {
            if signal > 0 { logger.notice("signal \(signal): stopping (unmounting \(mountpoint))") }
            do {
                try session.unmount()
                retryStopUntil = nil
                _ = session.waitUntilFinished(seconds: 30)
                continue
            } catch {
                if signal > 0 {
                    logger.warning("\(error); retrying for \(Int(busyGrace)) s")
                    retryStopUntil = Date().addingTimeInterval(busyGrace)
                } else if let until = retryStopUntil, Date() >= until {
                    logger.error("\(error); still serving — send the signal again once it is free")
                    retryStopUntil = nil
                }
            }
        }
        tick()
    }
}
