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
        var devices: [String: String] = [:]  // "major:minor" → /dev/loopN(pM)
        for loop in LinuxDevices.loops(backedUnder: mountpoint) {
            let name = String(loop.device.dropFirst("/dev/".count))
            let partitions = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/block/\(name)")) ?? []).filter { $0.hasPrefix(name + "p") }
            for node in [name] + partitions {
                let devPath = node == name ? "/sys/block/\(name)/dev" : "/sys/block/\(name)/\(node)/dev"
                if let dev = try? String(contentsOfFile: devPath, encoding: .utf8) {
                    devices[dev.trimmingCharacters(in: .whitespacesAndNewlines)] = "/dev/" + node
                }
            }
        }
        return LinuxDevices.mounts().compactMap { mount in devices[mount.device].map { ($0, mount.mountpoint) } }
    }
}
