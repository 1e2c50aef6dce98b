import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A site and a vault hold the contents of protected disks: their directories are 0700 and
/// their files 0600 whatever the umask (the mode is given at creation, and a umask only takes
/// bits away), and an existing tree made by an older lifeboat is tightened when it is opened.
public enum PrivateFiles {
    public static let fileMode: FilePermissions = .ownerReadWrite
    public static let directoryMode: mode_t = 0o700

    /// `mkdir -p` with mode 0700 for every directory it creates; names the component that
    /// cannot be made (a file in the way, a missing parent on a read-only filesystem).
    public static func makeDirectory(_ path: FilePath) throws(LifeboatError) {
        var current = path.root.map { FilePath(root: $0) } ?? FilePath(".")
        for component in path.components {
            current.append(component)
            if Glibc.mkdir(current.string, directoryMode) == 0 { continue }
            let e = Errno(rawValue: errno)
            guard e == .fileExists else { throw .system(e, "cannot create directory", path: current.string) }
            var st = stat()
            guard stat(current.string, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                throw LifeboatError(.invalidArgument, "exists and is not a directory", path: current.string)
            }
        }
    }

    /// Makes `root` 0700 and everything under it 0700 (directories) or 0600 (files), when
    /// `root` is open to anyone but its owner. Cheap when already private: one stat.
    public static func tighten(_ root: FilePath) {
        var st = stat()
        guard stat(root.string, &st) == 0, st.st_mode & 0o077 != 0 else { return }
        chmod(root.string, directoryMode)
        guard let walk = FileManager.default.enumerator(atPath: root.string) else { return }
        for case let name as String in walk {
            let path = root.appending(name).string
            guard lstat(path, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: chmod(path, directoryMode)
            case S_IFREG: chmod(path, mode_t(fileMode.rawValue))
            default: continue  // the control socket is made 0600 by protect; links stay as they are
            }
        }
    }
}
