import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A client of the qemu guest agent (qemu-guest-agent, or the sample machine's own) through
/// the host end of its channel: the unix socket of qemu's
/// `-chardev socket,path=SOCKET,server=on,wait=off,id=qga0 -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0`.
///
/// The protocol is QGA's: one JSON object per command. The channel has no framing across
/// connections, so each call starts with `guest-sync-delimited` and a random id: the agent
/// answers with a 0xFF byte and then the id, and whatever an earlier client left behind before
/// that byte is dropped. Every step keeps to a deadline: a guest that does not answer is a
/// failure, never a hang.
public struct GuestAgent: Sendable {
    public let socket: String

    public init(socket: String) { self.socket = socket }

    /// `guest-fsfreeze-freeze`: the guest's filesystems flushed and frozen. Nil, or why not.
    public func freeze(deadline: ContinuousClock.Instant) -> String? {
        failure { try call("guest-fsfreeze-freeze", deadline: deadline) }
    }

    /// `guest-fsfreeze-thaw`. Nil, or why not.
    public func thaw(deadline: ContinuousClock.Instant) -> String? {
        failure { try call("guest-fsfreeze-thaw", deadline: deadline) }
    }

    /// `guest-fsfreeze-status`: "frozen" or "thawed".
    public func status(deadline: ContinuousClock.Instant) throws -> String {
        let value = try call("guest-fsfreeze-status", deadline: deadline)
        guard let text = value as? String else { throw LifeboatError(.io, "the guest agent answered guest-fsfreeze-status with \(value)", path: socket) }
        return text
    }

    private func failure(_ body: () throws -> Any) -> String? {
        do {
            _ = try body()
            return nil
        } catch let e as LifeboatError {
            return e.description
        } catch {
            return "\(error)"
        }
    }

    /// Sends one command after a sync; returns its "return" value or throws its "error".
    @discardableResult
    func call(_ command: String, deadline: ContinuousClock.Instant) throws -> Any {
        let fd = try connect()
        defer { close(fd) }
        let id = Int.random(in: 1...Int(Int32.max))
        try send(fd, "{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":\(id)}}\n", deadline: deadline)
        try skipToDelimiter(fd, deadline: deadline)
        let sync = try readObject(fd, deadline: deadline)
        guard (sync["return"] as? Int) == id else {
            throw LifeboatError(.io, "the guest agent answered the sync with \(sync), not id \(id)", path: socket)
        }
        try send(fd, "{\"execute\":\"\(command)\"}\n", deadline: deadline)
        let answer = try readObject(fd, deadline: deadline)
        if let error = answer["error"] as? [String: Any] {
            throw LifeboatError(.io, "\(command) failed in the guest: \(error["desc"] as? String ?? "\(error)")", path: socket)
        }
        guard let value = answer["return"] else { throw LifeboatError(.io, "the guest agent answered \(command) with \(answer)", path: socket) }
        return value
    }

    private func connect() throws -> Int32 {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LifeboatError.system(Errno(rawValue: errno), "cannot make a socket", path: socket) }
        guard socket.utf8.count <= maxUnixSocketPath else {
            close(fd)
            throw LifeboatError(.invalidArgument, "the socket path is longer than a unix socket's \(maxUnixSocketPath) bytes", path: socket)
        }
        let ok = connectUnix(fd, socket) == 0
        guard ok else {
            let e = Errno(rawValue: errno)
            close(fd)
            throw LifeboatError.system(e, "cannot reach the guest agent (is the machine running with its channel?)", path: socket)
        }
        return fd
    }

    private func wait(_ fd: Int32, for events: Int32, deadline: ContinuousClock.Instant, doing what: String) throws {
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw LifeboatError(.io, "the guest agent did not answer in time (\(what))", path: socket) }
            var pfd = pollfd(fd: fd, events: Int16(events), revents: 0)
            let r = poll(&pfd, 1, Int32(min(left.inSeconds * 1000 + 1, 60_000)))
            if r > 0 { return }
            if r < 0, errno != EINTR { throw LifeboatError.system(Errno(rawValue: errno), "cannot wait for the guest agent", path: socket) }
        }
    }

    private func send(_ fd: Int32, _ text: String, deadline: ContinuousClock.Instant) throws {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            try wait(fd, for: Int32(POLLOUT), deadline: deadline, doing: "sending")
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw LifeboatError.system(Errno(rawValue: errno), "cannot write to the guest agent", path: socket) }
            bytes = bytes.dropFirst(n)
        }
    }

    private func readByte(_ fd: Int32, deadline: ContinuousClock.Instant) throws -> UInt8 {
        var byte: UInt8 = 0
        while true {
            try wait(fd, for: Int32(POLLIN), deadline: deadline, doing: "reading")
            let n = read(fd, &byte, 1)
            if n == 1 { return byte }
            if n < 0, errno == EINTR { continue }
            throw LifeboatError(.io, "the guest agent's channel closed", path: socket)
        }
    }

    private func skipToDelimiter(_ fd: Int32, deadline: ContinuousClock.Instant) throws {
        while try readByte(fd, deadline: deadline) != 0xFF {}
    }

    /// One JSON object, found by matching braces outside strings (answers are at most 64 KiB).
    private func readObject(_ fd: Int32, deadline: ContinuousClock.Instant) throws -> [String: Any] {
        var bytes: [UInt8] = []
        var depth = 0, inString = false, escaped = false
        while true {
            let b = try readByte(fd, deadline: deadline)
            if depth == 0 && b != UInt8(ascii: "{") { continue }
            bytes.append(b)
            guard bytes.count <= 64 << 10 else { throw LifeboatError(.io, "the guest agent's answer is over 64 KiB", path: socket) }
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"): depth += 1
            case UInt8(ascii: "}"):
                depth -= 1
                if depth == 0 {
                    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
                        throw LifeboatError(.io, "the guest agent's answer is not a JSON object: \(String(decoding: bytes.prefix(200), as: UTF8.self))", path: socket)
                    }
                    return object
                }
            default: break
            }
        }
    }
}
