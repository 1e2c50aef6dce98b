#if canImport(Glibc)
import Glibc
#endif

// Unix-domain socket addresses, for protect's control socket and a guest agent's channel.

/// The longest path a `sockaddr_un` holds (107 bytes and the terminating NUL on Linux).
package let maxUnixSocketPath = 107

/// Calls `body` with `path` as a `sockaddr_un`. A longer path is cut to `maxUnixSocketPath`:
/// callers that take a path from a user check it first.
package func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8.prefix(maxUnixSocketPath)) + [0]
    withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes) }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

package func bindUnix(_ fd: Int32, _ path: String) -> Int32 { withUnixAddress(path) { bind(fd, $0, $1) } }
package func connectUnix(_ fd: Int32, _ path: String) -> Int32 { withUnixAddress(path) { connect(fd, $0, $1) } }
