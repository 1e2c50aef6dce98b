import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

/// Filesystems that sit on the protected disks: the mounts of every loop device whose backing
/// file is one of `MOUNTPOINT/NAME.img` (from /sys/block/loop*/loop/backing_file and
/// /proc/self/mountinfo).
public enum ProtectedFilesystems {
    public static func find(mountpoint: String) -> [(device: String, mountpoint: String)] {
        let prefix = mountpoint.hasSuffix("/") ? mountpoint : mountpoint + "/"
        var devices: [String: String] = [:]  // "major:minor" → /dev/loopN(pM)
        let blocks = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        for name in blocks where name.hasPrefix("loop") {
            guard let backing = try? String(contentsOfFile: "/sys/block/\(name)/loop/backing_file", encoding: .utf8),
                  backing.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix(prefix) else { continue }
            var nodes = [name]
            nodes += ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/block/\(name)")) ?? []).filter { $0.hasPrefix(name + "p") }
            for node in nodes {
                let devPath = node == name ? "/sys/block/\(name)/dev" : "/sys/block/\(name)/\(node)/dev"
                if let dev = try? String(contentsOfFile: devPath, encoding: .utf8) {
                    devices[dev.trimmingCharacters(in: .whitespacesAndNewlines)] = "/dev/" + node
                }
            }
        }
        // mountinfo: id parent major:minor root mountpoint ... (proc(5)); octal escapes in paths.
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        var found: [(String, String)] = []
        for line in info.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, let device = devices[String(fields[2])] else { continue }
            found.append((device, unescape(String(fields[4]))))
        }
        return found
    }

    static func unescape(_ s: String) -> String {
        var out = ""
        var chars = Array(s)
        var i = 0
        while i < chars.count {
            if chars[i] == "\\", i + 3 < chars.count, let v = UInt8(String(chars[(i + 1)...(i + 3)]), radix: 8) {
                out.append(Character(UnicodeScalar(v)))
                i += 4
            } else {
                out.append(chars[i])
                i += 1
            }
        }
        chars = []
        return out
    }
}
