import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatSite
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Serves the control socket of a running `protect` (see `ControlProtocol`), one client at a
/// time: a `point` request holds the socket while it waits for shipping (a second checkpoint's
/// marker waits that long), and ends at once when protect stops.
final class ControlServer: @unchecked Sendable {
    private let path: String
    private let fd: Int32
    private let group: ProtectionGroup
    private let mountpoint: String
    private let logger: Logger
    private var thread: JoinableThread?

    init(site: Site, group: ProtectionGroup, mountpoint: String, logger: Logger) throws {
        path = site.stateDirectory.appending("control.sock").string
        self.group = group
        self.mountpoint = mountpoint
        self.logger = logger
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, bindUnix(fd, path) == 0, chmod(path, 0o600) == 0, listen(fd, 8) == 0 else {
            let e = errno
            if fd >= 0 { close(fd) }
            throw LifeboatError.system(Errno(rawValue: e), "cannot open the control socket", path: path)
        }
    }

    func start() throws {
        thread = try JoinableThread(name: "lifeboat-control") { [self] in self.serve() }
    }

    /// shutdown wakes the thread blocked in accept (EINVAL); the descriptor is closed only
    /// after the join, so its number cannot be reused under a thread still calling accept.
    func stop() {
        group.shipper?.abandonPointWaits()  // a `point` request being answered ends now
        shutdown(fd, Int32(SHUT_RDWR))
        thread?.join()
        close(fd)
        unlink(path)
    }

    private func serve() {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return  // closed by stop()
            }
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var line = [UInt8]()
        var byte: UInt8 = 0
        var complete = false
        while line.count <= ControlProtocol.maxLine, read(client, &byte, 1) == 1 {
            if byte == 10 { complete = true; break }
            line.append(byte)
        }
        let handlers = ControlHandlers(mark: { [group, logger] kind, label in
            let (lsn, digests) = try group.mark(kind, label: label)
            logger.notice("\(kind.name) point marked at LSN \(lsn)\(label.isEmpty ? "" : " (\(label))")")
            return (lsn, digests)
        }, point: { [group] lsn, note, within in
            guard let shipper = group.shipper else { return (nil, nil) }
            return shipper.point(at: lsn, note: note, within: within)
        })
        var response = ControlProtocol.answer(line: line, complete: complete, handlers: handlers)
        response.mountpoint = mountpoint
        var out = Array((try? JSONEncoder().encode(response)) ?? Data())
        out.append(10)
        _ = out.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
    }
}

