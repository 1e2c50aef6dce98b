import Foundation
import LifeboatCore
import LifeboatJournal
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The running `protect`'s control socket (`SITE/state/control.sock`, root only): one JSON
/// request line, one JSON answer line. `lifeboat checkpoint` uses it to write a marker, then to
/// learn the point's id in the vault (and keep a note with it) from protect's shipper: the
/// command never reaches the vault itself, which may be on another machine.
public struct ControlRequest: Codable, Sendable {
    /// "mark" or "point". On the wire the op and the kind are plain strings, so that an unknown
    /// one is refused with its name (`ControlProtocol.answer`), not as undecodable JSON.
    public var op: String
    /// mark: a `PointKind`'s name, and the label (none: empty).
    public var kind: String?
    public var label: String?
    /// point: the marker's LSN, how long to wait for it to reach the vault, a note to keep with it.
    public var lsn: UInt64?
    public var waitMilliseconds: Int64?
    public var note: String?

    /// A request to mark a point.
    public static func mark(_ kind: PointKind, label: String) -> ControlRequest {
        ControlRequest(op: "mark", kind: kind.rawValue, label: label)
    }

    /// A request for the vault's id of the point marked at `lsn`, waiting up to `within`.
    public static func point(at lsn: LSN, note: String?, within: Duration) -> ControlRequest {
        ControlRequest(op: "point", lsn: lsn.rawValue, waitMilliseconds: Int64(within.inSeconds * 1000), note: note)
    }
}

public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var lsn: UInt64?
    public var digests: [String: String]?
    public var mountpoint: String?
    /// point: the vault's id, or why the point is not in the vault (nil both: no vault).
    public var pointID: Int64?
    public var notInVault: String?
    /// With `error`: LifeboatError's code, so that the CLI exits as it would itself (absent: io).
    public var code: String?
    public init(ok: Bool) { self.ok = ok }
}

/// What answers a well-formed request: marking, and finding a point in the vault.
public struct ControlHandlers {
    public var mark: (Marker.Kind, String) throws -> (LSN, [DiskID: Hash128])
    /// The point's id in the vault, or why it is not there; (nil, nil) without a vault.
    public var point: (LSN, String?, Duration) -> (Int64?, String?)

    public init(mark: @escaping (Marker.Kind, String) throws -> (LSN, [DiskID: Hash128]),
                point: @escaping (LSN, String?, Duration) -> (Int64?, String?)) {
        self.mark = mark
        self.point = point
    }
}

/// The control socket's protocol: one JSON request line, one JSON answer line. A pure
/// function of the request, so it is tested and fuzzed without a socket.
public enum ControlProtocol {
    public static let maxLine = 65536

    /// The longest a `point` request may wait.
    public static let maxPointWait: Duration = .seconds(3600)

    /// The answer to one request line: a handler is called only for a well-formed request of a
    /// known op (and kind); anything else is refused with the reason, never guessed.
    public static func answer(line: [UInt8], complete: Bool, handlers: ControlHandlers) -> ControlResponse {
        var response = ControlResponse(ok: false)
        do {
            guard complete else {
                throw LifeboatError(.invalidArgument, line.count > maxLine ? "request longer than \(maxLine) bytes" : "request not ended by a newline")
            }
            let request: ControlRequest
            do { request = try JSONDecoder().decode(ControlRequest.self, from: Data(line)) } catch {
                throw LifeboatError(.invalidArgument, "request is not valid", cause: error)
            }
            switch request.op {
            case "mark": break
            case "point":
                guard let lsn = request.lsn, lsn > 0 else { throw LifeboatError(.invalidArgument, "field 'lsn': a point request needs the marker's LSN (above 0)") }
                let wait = request.waitMilliseconds ?? 0
                guard wait >= 0, wait <= Int64(maxPointWait.inSeconds * 1000) else {
                    throw LifeboatError(.invalidArgument, "field 'waitMilliseconds': \(wait) is not from 0 to \(Int64(maxPointWait.inSeconds * 1000))")
                }
                if let note = request.note, note.utf8.count > Marker.maxLabelBytes * 4 {
                    throw LifeboatError(.invalidArgument, "field 'note': \(note.utf8.count) bytes; at most \(Marker.maxLabelBytes * 4)")
                }
                let (id, notThere) = handlers.point(LSN(lsn), request.note, .milliseconds(wait))
                response.ok = true
                response.lsn = lsn
                response.pointID = id
                response.notInVault = notThere
                return response
            default:
                throw LifeboatError(.invalidArgument, "unknown op '\(request.op)' (known: mark, point)")
            }
            guard let kindName = request.kind else { throw LifeboatError(.invalidArgument, "field 'kind': a mark request needs the point's kind") }
            let label = request.label ?? ""
            let kind: Marker.Kind
            switch PointKind(rawValue: kindName) {
            case .appConsistent: kind = .appConsistent
            case .crashConsistent: kind = .crashConsistent
            case .label: kind = .label
            case nil:
                throw LifeboatError(.invalidArgument, "unknown point kind '\(kindName)' (known: \(PointKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard label.utf8.count <= Marker.maxLabelBytes else {
                throw LifeboatError(.invalidArgument, "the label is \(label.utf8.count) bytes; at most \(Marker.maxLabelBytes)")
            }
            let (lsn, digests) = try handlers.mark(kind, label)
            response.ok = true
            response.lsn = lsn.rawValue
            response.digests = Dictionary(uniqueKeysWithValues: digests.map { (String($0.key.rawValue), $0.value.description) })
        } catch {
            response.error = "\(error)"
            response.code = (error as? LifeboatError)?.code.rawValue
        }
        return response
    }
}

/// Connects to a running protect's control socket and sends one request; waits at most
/// `timeout` for the answer.
public func sendControlRequest(site: Site, _ request: ControlRequest, timeout: Duration = .seconds(30)) throws -> ControlResponse {
    let path = site.stateDirectory.appending("control.sock").string
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw LifeboatError.system(Errno(rawValue: errno), "socket") }
    defer { close(fd) }
    guard connectUnix(fd, path) == 0 else {
        let e = Errno(rawValue: errno)
        if e == .permissionDenied || e == .notPermitted {
            throw LifeboatError.system(e, "cannot reach protect's control socket (it is root's)", path: path)
        }
        throw LifeboatError(.notFound, "no running `lifeboat protect` for this site (cannot connect to its control socket: \(e))", path: path)
    }
    let (seconds, attoseconds) = timeout.components
    var tv = timeval(tv_sec: max(0, Int(seconds)), tv_usec: max(seconds > 0 ? 0 : 1000, Int(attoseconds / 1_000_000_000_000)))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var data = Array(try JSONEncoder().encode(request))
    data.append(10)
    guard data.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == data.count else {
        throw LifeboatError.system(Errno(rawValue: errno), "cannot send to protect", path: path)
    }
    var answer = [UInt8]()
    var byte: UInt8 = 0
    var last = 0
    while true {
        last = read(fd, &byte, 1)
        if last != 1 || byte == 10 { break }
        answer.append(byte)
    }
    if last < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
        throw LifeboatError(.io, "protect did not answer within \(timeout)", path: path)
    }
    guard let response = try? JSONDecoder().decode(ControlResponse.self, from: Data(answer)) else {
        throw LifeboatError(.io, "protect closed the connection without a valid answer (did it stop?)", path: path)
    }
    return response
}
