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
        case io                // an I/O error from the system (EIO, ENOSPC, ...)
        case busy              // held by someone else (lock, mountpoint)
        case permission        // not root, no /dev/fuse
        case unsupported       // a newer format version, an unknown record type
    }

    public var code: Code
    public var message: String
    public var path: String?
    public var offset: Int64?
    public var errno: Errno?

    public init(_ code: Code, _ message: String, path: String? = nil, offset: Int64? = nil, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.offset = offset
        self.errno = errno
    }

    public var description: String {
        var text = ""
        if let path { text += path + ": " }
        if let offset { text += "at offset \(offset): " }
        text += message
        if let errno { text += " (\(errno))" }
        return text
    }

    /// An error from a system call on `path`, coded from errno (ENOSPC and EIO stay `.io`).
    public static func system(_ errno: Errno, _ what: String, path: String? = nil, offset: Int64? = nil) -> LifeboatError {
        let code: Code
        switch errno {
        case .noSuchFileOrDirectory: code = .notFound
        case .fileExists: code = .alreadyExists
        case .permissionDenied, .notPermitted: code = .permission
        case .resourceBusy, .resourceTemporarilyUnavailable: code = .busy
        default: code = .io
        }
        return LifeboatError(code, what, path: path, offset: offset, errno: errno)
    }
}
