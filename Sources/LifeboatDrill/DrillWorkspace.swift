import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

/// One drill's working directory, `ROOT/drill-TIME-PID/` (ROOT: `--work-dir`, $LIFEBOAT_DRILL_DIR
/// or /var/lib/lifeboat/drills):
///
/// ```
/// drill.json     who runs it (supervisor and worker pids), the vault and the pin to remove
/// spec.json      what the worker does (WorkerSpec)
/// result.json    what it found (WorkerResult)
/// target/        the point's disks (FUSE, inside the worker's mount namespace)
/// mnt/NAME/      each disk's filesystem (same namespace)
/// overlay/       the copy-on-write overlay files
/// logs/          each command's output
/// ```
///
/// Everything mounted lives in the worker's private mount namespace and goes when the worker
/// goes, however it ends. What can outlive it is on this directory's account: a loop device
/// still bound to a target file, the overlay files, the vault pin. `cleanup()` removes all of
/// it; `lifeboat drill cleanup` runs it for every drill whose processes are gone.
public struct DrillWorkspace: Sendable {
    public let directory: String

    public static var defaultRoot: String {
        ProcessInfo.processInfo.environment["LIFEBOAT_DRILL_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/var/lib/lifeboat/drills"
    }

    public struct Record: Codable, Sendable {
        public var supervisorPID: Int32
        public var workerPID: Int32?
        public var vault: String
        public var pin: String?
    }

    var recordPath: String { directory + "/drill.json" }
    var specPath: String { directory + "/spec.json" }
    var resultPath: String { directory + "/result.json" }
    var targetDirectory: String { directory + "/target" }
    var overlayDirectory: String { directory + "/overlay" }
    var logDirectory: String { directory + "/logs" }
    func mountDirectory(_ disk: String) -> String { directory + "/mnt/" + disk }
    func log(_ name: String) -> String { logDirectory + "/" + name.replacingOccurrences(of: "/", with: "_") + ".log" }

    init(directory: String) { self.directory = directory }

    static func create(root: String) throws -> DrillWorkspace {
        let stamp = ISO8601DateFormatter.string(from: Date(), timeZone: .gmt, formatOptions: [.withYear, .withMonth, .withDay, .withTime])
        let ws = DrillWorkspace(directory: "\(absolutePath(root))/drill-\(stamp)-\(getpid())")
        for dir in [ws.directory, ws.targetDirectory, ws.overlayDirectory, ws.logDirectory, ws.directory + "/mnt"] {
            do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw LifeboatError(.io, "cannot create the drill's working directory: \(error.localizedDescription)", path: dir)
            }
        }
        return ws
    }

    func save<T: Encodable>(_ value: T, to path: String) throws {
        try writeFileAtomically(.init(path), Array(try LifeboatJSON.encoder().encode(value)))
    }

    func load<T: Decodable>(_ type: T.Type, from path: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: path) else { throw LifeboatError(.notFound, "missing", path: path) }
        do { return try LifeboatJSON.decoder().decode(type, from: data) } catch {
            throw LifeboatError(.corrupt, "unreadable: \(error)", path: path)
        }
    }

    var record: Record? { try? load(Record.self, from: recordPath) }

    /// Whether a process of this drill still runs (then cleanup would pull its targets away).
    var isRunning: Bool {
        guard let r = record else { return false }
        return [r.supervisorPID, r.workerPID].compactMap { $0 }.contains { $0 != getpid() && processExists($0) }
    }

    /// Removes what the drill left: mounts under the directory in this namespace (none, unless
    /// something went very wrong), loop devices bound to its files, the vault pin, the
    /// directory. Returns one line per thing removed.
    @discardableResult
    func cleanup() -> [String] {
        var removed: [String] = []
        for mountpoint in Self.mountpoints(under: directory).reversed() {
            if umount2(mountpoint, Int32(MNT_DETACH)) == 0 { removed.append("unmounted \(mountpoint)") }
        }
        if let pin = record?.pin, unlink(pin) == 0 { removed.append("unpinned \(pin)") }
        // A worker that died leaves its mount namespace to the kernel, which tears it down a
        // moment later: until then its mountpoints here cannot be removed (EBUSY, whatever the
        // namespace) and its loop devices stay attached. So: detach and remove until both go.
        var detached: Set<String> = []
        let deadline = Date().addingTimeInterval(10)
        while true {
            for (device, backing) in LinuxDevices.loops(backedUnder: directory) where !detached.contains(device) {
                let r = try? Subprocess.run(["/sbin/losetup", "-d", device], log: "/dev/null", timeout: 30, cancellation: Cancellation())
                if r?.succeeded == true {
                    detached.insert(device)
                    removed.append("detached \(device) (\(backing))")
                }
            }
            do {
                try FileManager.default.removeItem(atPath: directory)
                removed.append("removed \(directory)")
                break
            } catch {
                if !FileManager.default.fileExists(atPath: directory) { break }
                if Date() > deadline {
                    let loops = LinuxDevices.loops(backedUnder: directory).map(\.device)
                    removed.append("could not remove \(directory): \(error.localizedDescription)" + (loops.isEmpty ? "" : "; still attached: \(loops.joined(separator: ", "))"))
                    break
                }
                usleep(100_000)
            }
        }
        return removed
    }

    /// Cleans every drill under `root` whose processes are gone; lists the running ones.
    public static func cleanupAll(root: String = defaultRoot) -> (removed: [String], running: [String]) {
        var removed: [String] = []
        var running: [String] = []
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { $0.hasPrefix("drill-") }.sorted()
        for name in names {
            let ws = DrillWorkspace(directory: "\(absolutePath(root))/\(name)")
            if ws.isRunning { running.append(ws.directory) } else { removed += ws.cleanup() }
        }
        return (removed, running)
    }

    static func mountpoints(under dir: String) -> [String] {
        LinuxDevices.mounts().map(\.mountpoint).filter { $0 == dir || $0.hasPrefix(dir + "/") }
    }

}

/// Whether `pid` is a live process: a zombie (an orphaned worker its new parent has not yet
/// reaped) is not.
func processExists(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 || errno == EPERM else { return false }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}
