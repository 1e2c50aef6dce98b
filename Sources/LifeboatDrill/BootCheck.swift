import CLinux
import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The `boot` check: the point's disk boots in qemu inside the drill's namespaces and must print
/// the plan's line on its serial console in time.
///
/// - The disk is the point view's image opened with `snapshot=on`: the guest's writes go to a
///   temporary file qemu deletes (in the drill's workspace), never to the point, and not to the
///   overlay the later checks read either: `fsck` sees the disk as the point holds it.
/// - No network device (`-nic none`, and the drill's network namespace has only loopback), no
///   display, no reboot (a guest that reboots ends the check).
/// - The console is read from a pipe as it comes (no polling), kept in the drill's log and its
///   tail in the report; qemu runs in its own process group, killed whole when the line appears,
///   at the timeout, or when the drill is stopped; the PID namespace kills anything left.
struct BootCheck {
    static let qemu = "/usr/bin/qemu-system-x86_64"

    let image: String
    let options: BootOptions
    let timeout: TimeInterval
    /// Where qemu's snapshot file goes (TMPDIR): the drill's workspace.
    let scratchDirectory: String
    let log: String

    /// What the boot showed: the outcome, the seconds from qemu's start to the expected line.
    struct Outcome {
        var passed: Bool
        var message: String
        var bootSeconds: Double?
        var seconds: Double
        var consoleTail: String
    }

    /// The accelerator to use: KVM only where /dev/kvm really runs a guest (a nested hypervisor
    /// may open it and then fail in the boot loader).
    static func accelerator(_ wanted: BootOptions.Accelerator) -> String {
        switch wanted {
        case .kvm: "kvm"
        case .tcg: "tcg"
        case .auto: clinux_kvm_runs_guests() == 1 ? "kvm" : "tcg"
        }
    }

    func arguments(accelerator: String) -> [String] {
        var argv = [Self.qemu, "-machine", "q35", "-accel", accelerator, "-m", String(options.memoryMiB), "-smp", String(options.cpus),
                    "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot",
                    "-drive", "file=\(image),format=raw,if=virtio,snapshot=on"]
        if accelerator == "kvm" { argv += ["-cpu", "host"] }
        if let firmware = options.firmware { argv += ["-bios", firmware] }
        if let kernel = options.kernel {
            argv += ["-kernel", kernel]
            if let initrd = options.initrd { argv += ["-initrd", initrd] }
            if let append = options.append { argv += ["-append", append] }
        }
        return argv
    }

    func run(cancellation: Cancellation) throws -> Outcome {
        try cancellation.check()
        let accelerator = Self.accelerator(options.accelerator)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw LifeboatError.system(Errno(rawValue: errno), "cannot make a pipe for the console") }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        // Only the copies spawn makes (stdout, stderr) reach qemu.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer { close(readEnd) }
        let consoleLog = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard consoleLog >= 0 else {
            close(writeEnd)
            throw LifeboatError.system(Errno(rawValue: errno), "cannot open the console log", path: log)
        }
        defer { close(consoleLog) }
        var environment = ProcessInfo.processInfo.environment
        environment["TMPDIR"] = scratchDirectory
        let start = ContinuousClock.now
        let pid: pid_t
        do {
            pid = try ChildProcess.spawn(["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"] + arguments(accelerator: accelerator),
                                         environment: environment, outputFD: writeEnd)
        } catch {
            close(writeEnd)
            throw error
        }
        close(writeEnd)
        if !cancellation.running(pid) { kill(-pid, SIGKILL) }
        defer {
            _ = cancellation.running(0)
            kill(-pid, SIGKILL)
            _ = ChildProcess.waitForExit(pid, until: .now + .seconds(60))
        }

        let deadline = start + .milliseconds(Int64(timeout * 1000))
        var console = ConsoleLines()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        func outcome(_ passed: Bool, _ message: String, bootSeconds: Double? = nil) -> Outcome {
            Outcome(passed: passed, message: message, bootSeconds: bootSeconds,
                    seconds: (ContinuousClock.now - start).inSeconds, consoleTail: console.tail)
        }
        while true {
            let left = deadline - ContinuousClock.now
            if left <= .zero {
                return outcome(false, "no console line containing '\(options.expect)' within \(describeDuration(timeout)) under \(accelerator.uppercased())")
            }
            var pfd = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(left.inSeconds * 1000 + 1, 1000)))
            if ready < 0, errno != EINTR { throw LifeboatError.system(Errno(rawValue: errno), "cannot read the console") }
            try cancellation.check()
            guard ready > 0 else { continue }
            let n = read(readEnd, &buffer, buffer.count)
            if n < 0, errno == EINTR { continue }
            if n <= 0 {
                // qemu closed the console: it ended before the line came.
                let status = ChildProcess.waitForExit(pid, until: .now + .seconds(10)).map(Subprocess.exitStatus)
                return outcome(false, "qemu ended (exit \(status.map(String.init) ?? "?")) before a console line containing '\(options.expect)'"
                               + (console.lastLine.isEmpty ? "" : "; last line: \(console.lastLine)"))
            }
            _ = buffer.withUnsafeBytes { write(consoleLog, $0.baseAddress, n) }
            for line in console.append(buffer[0..<n]) {
                if let bad = options.failOn, line.contains(bad) {
                    return outcome(false, "the guest printed: \(line)")
                }
                if line.contains(options.expect) {
                    let seconds = (ContinuousClock.now - start).inSeconds
                    return outcome(true, "booted in \(describeDuration(seconds)) under \(accelerator.uppercased()): \(line)", bootSeconds: seconds)
                }
            }
        }
    }
}

/// The console split into lines as bytes arrive, with its last 4 KiB kept for the report.
/// Terminal control sequences (the firmware clears the screen) are left out of the lines.
struct ConsoleLines {
    private var partial: [UInt8] = []
    private var kept: [UInt8] = []
    private(set) var lastLine = ""

    var tail: String { String(decoding: kept, as: UTF8.self) }

    mutating func append(_ bytes: ArraySlice<UInt8>) -> [String] {
        kept.append(contentsOf: bytes)
        if kept.count > Subprocess.tailBytes { kept.removeFirst(kept.count - Subprocess.tailBytes) }
        var lines: [String] = []
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                let line = Self.printable(partial)
                if !line.isEmpty { lastLine = line }
                lines.append(line)
                partial.removeAll(keepingCapacity: true)
            } else if partial.count < 4096 {
                partial.append(b)
            }
        }
        return lines
    }

    /// The line without escape sequences (ESC [ ... letter) and other control characters.
    static func printable(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x1B {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "[") {
                    i += 1
                    while i < bytes.count, !(0x40...0x7E).contains(bytes[i]) { i += 1 }
                }
                i += 1
                continue
            }
            if b >= 0x20 || b == 0x09 { out.append(b) }
            i += 1
        }
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }
}
