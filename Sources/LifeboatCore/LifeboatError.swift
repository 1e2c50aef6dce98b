import Foundation
import SystemPackage

/// The one error type of Lifeboat's libraries: a code (which decides the CLI exit status and
/// the errno at the FUSE boundary), a message with its context, and the underlying cause.
/// Corruption found on disk is always one of these, with the file and offset, never a trap.
public struct LifeboatError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case invalidArgument   // bad input from the user (size, name, plan)
        case notFound          // site, disk, file or point that does not exist
        case alreadyExists
        case corrupt           // on-disk data fails its checks
        case mismatch          // a verification found a difference
        case inconclusive      // a verification could not decide (the data changed while it ran)
        case degraded          // done, but less than was asked (a crash-consistent point for an app-consistent one)
        case io                // an I/O error from the system (EIO, ENOSPC, ...)
        case busy              // held by someone else (lock, mountpoint)
        case permission        // not root, no /dev/fuse, EACCES
        case unsupported       // a newer format version, an unknown record type
        case fenced            // a writer of a generation that is not the group's current one (decision 0012)
        case internalError     // a Lifeboat bug or an error no code fits (the cause says which)
    }

    public var code: Code
    public var message: String
    public var path: String?
    public var offset: Int64?
    public var errno: Errno?
    /// The error this one was made from, when it is not already said by `errno` or `message`.
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, path: String? = nil, offset: Int64? = nil, errno: Errno? = nil, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.offset = offset
        self.errno = errno
        self.cause = cause
    }

    public var description: String {
        var text = ""
        if let path { text += path + ": " }
        if let offset { text += "at offset \(offset): " }
        text += message
        if let errno { text += " (\(errno))" }
        if let cause { text += ": " + describeCause(cause) }
        return text
    }

    /// An error from a system call on `path`, coded from errno (ENOSPC and EIO stay `.io`).
    public static func system(_ errno: Errno, _ what: String, path: String? = nil, offset: Int64? = nil) -> LifeboatError {
        LifeboatError(code(for: errno), what, path: path, offset: offset, errno: errno)
    }

    /// `error` as a LifeboatError: itself, or an Errno coded as `system` does, or any other
    /// error kept as the cause of `what` under `code`. Never invents an errno.
    public static func wrapping(_ error: any Error, _ what: String, code: Code = .io, path: String? = nil, offset: Int64? = nil) -> LifeboatError {
        switch error {
        case let e as LifeboatError: return e
        case let e as Errno: return .system(e, what, path: path, offset: offset)
        default: return LifeboatError(code, what, path: path, offset: offset, cause: error)
        }
    }

    public static func code(for errno: Errno) -> Code {
        switch errno {
        case .noSuchFileOrDirectory: .notFound
        case .fileExists: .alreadyExists
        case .permissionDenied, .notPermitted, .readOnlyFileSystem: .permission
        case .resourceBusy, .resourceTemporarilyUnavailable: .busy
        case .notDirectory, .isDirectory, .invalidArgument, .fileNameTooLong: .invalidArgument
        default: .io
        }
    }
}

/// A cause in words a user can act on: a decoding error names the field and what was wrong
/// instead of Foundation's debug dump.
private func describeCause(_ error: any Error) -> String {
    guard let e = error as? DecodingError else { return "\(error)" }
    func field(_ path: [any CodingKey]) -> String {
        path.isEmpty ? "the top level" : "field '" + path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "'"
    }
    switch e {
    case .dataCorrupted(let c): return c.codingPath.isEmpty ? "not valid JSON" : "\(field(c.codingPath)): \(c.debugDescription)"
    case .keyNotFound(let key, let c): return "\(field(c.codingPath + [key])) is missing"
    case .typeMismatch(let type, let c): return "\(field(c.codingPath)) is not a \(type)"
    case .valueNotFound(let type, let c): return "\(field(c.codingPath)) is null, not a \(type)"
    @unknown default: return "\(error)"
    }
}
