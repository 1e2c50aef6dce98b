import LifeboatCore

/// A recovery-point marker: the payload of a `marker` record.
///
/// | off | size | field |
/// | 0 | 1 | kind (1 crash-consistent, 2 app-consistent, 3 label) | 1 | 1 | flags (bit 0: ends a resync) | 2 | 2 | reserved |
/// | 4 | 8 | time (Unix ns) | 12 | 2 | label length L | 14 | L | label (UTF-8) |
/// | 14+L | 4 | disk count N | then N × (4 disk id, 16 digest root: high then low, LE) |
public struct Marker: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case crashConsistent = 1, appConsistent = 2, label = 3
        /// As the CLI, the catalog and JSON spell it.
        public var name: String {
            switch self {
            case .crashConsistent: "crash-consistent"
            case .appConsistent: "app-consistent"
            case .label: "label"
            }
        }
    }
    /// The kind as a point carries it in the catalog, the CLI and JSON.
    public var pointKind: PointKind {
        switch kind {
        case .crashConsistent: .crashConsistent
        case .appConsistent: .appConsistent
        case .label: .label
        }
    }

    /// The longest label a marker keeps; the CLI refuses longer ones.
    public static let maxLabelBytes = 1024
    public var kind: Kind
    public var timeNanos: Int64
    public var label: String
    public var digests: [DiskID: Hash128]
    /// The first consistent cut after a resync (decision 0010, "Spool limit"): the vault held
    /// no point between the writes it missed and this marker, and this one closes that window.
    public var endsResync: Bool

    public init(kind: Kind, timeNanos: Int64, label: String, digests: [DiskID: Hash128], endsResync: Bool = false) {
        self.kind = kind
        self.timeNanos = timeNanos
        self.label = label
        self.digests = digests
        self.endsResync = endsResync
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.put(kind.rawValue)
        w.put(UInt8(endsResync ? 1 : 0))
        w.put(zeros: 2)
        w.put(timeNanos)
        // Cut on a character boundary, so that what is written always decodes.
        var label = Array(self.label.utf8.prefix(Int(UInt16.max)))
        while String(validating: label, as: UTF8.self) == nil { label.removeLast() }
        w.put(UInt16(label.count))
        w.put(label)
        w.put(UInt32(digests.count))
        for (disk, root) in digests.sorted(by: { $0.key < $1.key }) {
            w.put(disk.rawValue)
            w.put(root.high)
            w.put(root.low)
        }
        return w.bytes
    }

    public static func decode(_ payload: UnsafeRawBufferPointer) -> Marker? {
        var r = ByteReader(payload)
        // A flag this build does not know is refused, never ignored: it may change what the
        // marker means.
        guard let k = r.get(UInt8.self), let kind = Kind(rawValue: k), let flags = r.get(UInt8.self), flags & ~1 == 0, r.get(count: 2) == [0, 0],
            let time = r.get(Int64.self), let len = r.get(UInt16.self), let label = r.get(count: Int(len)),
            let text = String(validating: label, as: UTF8.self), let n = r.get(UInt32.self)
        else { return nil }
        var digests: [DiskID: Hash128] = [:]
        var previous: UInt32?
        for _ in 0..<n {
            guard let d = r.get(UInt32.self), let high = r.get(UInt64.self), let low = r.get(UInt64.self) else { return nil }
            // Ascending, distinct disk ids, as written: a second digest for one disk is ambiguous.
            guard previous.map({ d > $0 }) ?? true else { return nil }
            previous = d
            digests[DiskID(d)] = Hash128(high: high, low: low)
        }
        guard r.remaining == 0 else { return nil }
        return Marker(kind: kind, timeNanos: time, label: text, digests: digests, endsResync: flags & 1 != 0)
    }
}

/// A recovery point's kind, spelled as the catalog, the CLI and JSON spell it. A value the
/// catalog holds that is none of these does not decode: vault damage.
public enum PointKind: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    case crashConsistent = "crash-consistent"
    case appConsistent = "app-consistent"
    case label

    public var description: String { rawValue }
}
