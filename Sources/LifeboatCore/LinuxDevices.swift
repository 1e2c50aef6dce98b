import Foundation

/// What the kernel says about loop devices and mounts (sysfs, /proc/self/mountinfo): one
/// reading for the quiesce, the drill's cleanup and the unmount refusals.
public enum LinuxDevices {
    /// Loop devices whose backing file lies under `directory` (sysfs; a file whose name is gone
    /// still shows the path it had), as `/dev/loopN` and the file.
    public static func loops(backedUnder directory: String) -> [(device: String, backing: String)] {
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return names.filter { $0.hasPrefix("loop") }.sorted().compactMap { name in
            guard let raw = try? String(contentsOfFile: "/sys/block/\(name)/loop/backing_file", encoding: .utf8) else { return nil }
            let backing = raw.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: " (deleted)", with: "")
            return backing.hasPrefix(prefix) ? ("/dev/\(name)", backing) : nil
        }
    }

    /// This process's mounts: each one's device (`major:minor`) and mountpoint, from
    /// /proc/self/mountinfo (proc(5): id parent major:minor root mountpoint …).
    /// The files this process has open under `directory` (from /proc/self/fd): what keeps a
    /// filesystem busy when it should unmount.
    public static func openFiles(under directory: String) -> [String] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0) }
            .filter { $0.hasPrefix(directory) }
    }

    public static func mounts() -> [(device: String, mountpoint: String)] {
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return info.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 ? (String(fields[2]), unescapeMountPath(String(fields[4]))) : nil
        }
    }

    /// A path field of /proc/self/mountinfo with its octal escapes (`\040` for a space, …) undone
    /// (proc(5)).
    public static func unescapeMountPath(_ s: String) -> String {
        var out = [UInt8]()
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count,
               let v = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
