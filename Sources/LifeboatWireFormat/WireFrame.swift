import Foundation
import LifeboatCore

/// One message on the vault's connection (Docs/formats/wire.md): a 4-byte big-endian length of
/// the rest, a 4-byte big-endian length of the header, the header (JSON), the body (bytes: a
/// zstd segment, a chunk of a disk, or nothing). Answers come in the order of the requests.
public struct WireFrame: Sendable, Equatable {
    /// A sealed segment is at most 4 GiB in theory but 64 MiB by default; frames are capped well
    /// above that and far below what a 32-bit length allows, so a corrupt length is refused
    /// before anything is allocated for it.
    public static let maxBytes = 96 << 20
    public static let maxHeaderBytes = 64 << 10

    public var header: [UInt8]
    public var body: [UInt8]

    public init(header: [UInt8], body: [UInt8] = []) {
        self.header = header
        self.body = body
    }

    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + body.count)
        appendBigEndian(&out, UInt32(4 + header.count + body.count))
        appendBigEndian(&out, UInt32(header.count))
        out += header
        out += body
        return out
    }

    /// A whole frame from `bytes` (exactly one); refused with the reason otherwise.
    public static func decode(_ bytes: [UInt8]) throws -> WireFrame {
        guard bytes.count >= 8 else { throw LifeboatError(.corrupt, "a wire frame is shorter than its 8-byte lengths") }
        let total = Int(readBigEndian(bytes, at: 0))
        guard total == bytes.count - 4 else { throw LifeboatError(.corrupt, "a wire frame says \(total) bytes follow; \(bytes.count - 4) do") }
        return try decode(rest: Array(bytes[4...]))
    }

    /// The frame from what follows its first length.
    public static func decode(rest: [UInt8]) throws -> WireFrame {
        guard rest.count >= 4 else { throw LifeboatError(.corrupt, "a wire frame has no header length") }
        let headerCount = Int(readBigEndian(rest, at: 0))
        try checkHeaderLength(headerCount, rest: rest.count)
        return WireFrame(header: Array(rest[4..<(4 + headerCount)]), body: Array(rest[(4 + headerCount)...]))
    }

    /// Refuses a header length that does not fit in the `rest` bytes after the first length.
    public static func checkHeaderLength(_ headerCount: Int, rest: Int) throws {
        guard rest >= 4 else { throw LifeboatError(.corrupt, "a wire frame has no header length") }
        guard headerCount <= maxHeaderBytes, headerCount <= rest - 4 else {
            throw LifeboatError(.corrupt, "a wire frame's header length \(headerCount) does not fit (frame \(rest) bytes, header at most \(maxHeaderBytes))")
        }
    }

    private static func readBigEndian(_ b: [UInt8], at i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    private func appendBigEndian(_ out: inout [UInt8], _ v: UInt32) {
        out += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }
}

/// What a site asks of its vault. `op` stays a string on the wire so that an unknown one is
/// refused by name.
public struct WireRequest: Codable, Sendable {
    public var op: String
    public var group: String?
    public var disk: UInt32?
    public var name: String?
    public var sizeBytes: Int64?
    public var offset: Int64?
    public var lsn: UInt64?
    public var point: Int64?
    public var note: String?
    /// Who writes (every request that adds to the group's history, and `state`): the generation
    /// the site serves and its owner token (decision 0012). Absent: generation 1's own site.
    public var generation: Int64?
    public var owner: String?
    /// writtenBlocks: the LSN range `(after, lsn]`; forsakenBlocks: whose; takeOver: the new owner's token.
    public var after: UInt64?
    public var ofGeneration: Int64?
    public var newOwner: String?

    public init(op: String) { self.op = op }
}

/// The vault's answer. `error` set: refused or failed (`code` says how, as LifeboatError's codes).
public struct WireResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var code: String?
    /// state: who the vault takes this connection for, its group, disks and held-through LSN.
    public var site: String?
    public var group: String?
    public var disks: [UInt32]?
    public var heldThrough: UInt64?
    public var maintenanceError: String?
    /// pointAt
    public var pointID: Int64?
    /// state: why the vault refuses this writer's records (another generation owns the group),
    /// absent while it is the owner.
    public var fenced: String?
    /// state: the site owns the current generation and a planned failover asks it to drain.
    public var drainAsked: Bool?

    public init(ok: Bool) { self.ok = ok }
}

public enum WireJSON {
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(bytes)) } catch {
            throw LifeboatError(.corrupt, "a wire header is not a valid \(type): \(error)")
        }
    }
}
