import LifeboatCore
import LifeboatVault
import SystemPackage

/// Where a site's journal goes (sealed segments, and the open one's records as streamed), seen from the source side: the transport-neutral
/// face of a vault. `LocalVaultReplica` is the vault as a directory on this machine; a network
/// client implements the same calls. The `Shipper` decides what to send and when; a target only
/// moves bytes and answers from the vault's catalog.
///
/// Every call may throw for an unreachable, full, read-only or damaged vault: the shipper then
/// keeps the segments local, reports why, calls `reset()` and tries again later. `point(at:)`
/// and `annotate` are called from the control socket's thread while the shipper's runs.
/// A sealed segment as a `ReplicaTarget` sends it (what that is, is the target's business).
public struct PreparedSegment: Sendable {
    public let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
}

/// What the vault says of this site in one answer (`Vault.state(of:)`): the group it holds, its
/// disks, how far it holds this site's records, and where the site stands.
public typealias ReplicaState = WriterState

public protocol ReplicaTarget: AnyObject, Sendable {
    /// Where the vault is, for status and logs: a path or an address.
    var address: String { get }

    /// The protection group the vault holds, nil for a new vault.
    func groupID() throws -> String?

    /// Initial replication: the disk's content before any journaled write becomes its base in
    /// the vault. `progress` is called with the bytes sent so far.
    func addDisk(group: String, id: DiskID, name: String, sizeBytes: Int64, initialContent: FilePath,
                 progress: (Int64) -> Void) throws

    /// Every record of this site's up to this LSN is durably in the vault (read from its
    /// catalog; for a writer a failover fenced, no further than that failover's fork —
    /// `Vault.heldThrough(for:)`): what the site may delete.
    func heldThrough() throws -> LSN

    /// Where this site stands in the group's history (decision 0012): the current generation's
    /// owner, its owner asked to drain for a planned failover, or fenced (another generation owns
    /// the group). Every call that sends records carries the site's claim, and the vault refuses
    /// them with a `.fenced` error as well; this asks before anything is sent.
    func standing() throws -> WriterStanding

    /// The answers of `groupID()`, `heldThrough()` and `standing()`, and the disks the vault
    /// holds, at once.
    func state() throws -> ReplicaState

    /// The owner stopped serving writes and the vault holds its final marker at `lsn`: a planned
    /// failover may fork there.
    func reportDrained(at lsn: LSN) throws

    /// One sealed segment, as it lies in the journal, made ready for `ship` (the wire's zstd for
    /// a vault on another machine): the shipper prepares the next segment on another thread
    /// while the vault takes the one before.
    func prepare(segment: [UInt8]) throws -> PreparedSegment

    /// Sends one prepared segment and returns without waiting for the vault: the answer — once
    /// the vault holds it durably, the LSN it holds through, read from its catalog — comes from
    /// `PendingShip.held()`. The shipper sends the next segment before it waits for this one's
    /// answer (a window of two), so that the vault takes one segment off the wire while it
    /// ingests the one before. Answers come in the order of the sends. A segment the vault
    /// already holds is accepted again (a retry after a lost answer); one past a gap is refused.
    func send(_ segment: PreparedSegment, name: String) throws -> PendingShip

    /// Sends a run of records as they lie in a segment, from `firstLSN` (streaming: the open
    /// segment's records as they become durable, or the rest of a segment partly sent); returns
    /// the LSN the vault holds through once they are durable there. Records it holds already
    /// are dropped by the vault, never ingested twice.
    func append(records: [UInt8], firstLSN: LSN, name: String) throws -> LSN

    /// The site dropped the records it had not shipped, up to `resumingAt` − 1 (its spool
    /// limit), and sends from `resumingAt` on, then a resync of the regions they wrote: the
    /// vault opens a resync window (no point until the marker that ends it) and returns the LSN
    /// it holds through. A vault that holds those LSNs already opens none.
    func openResync(resumingAt: LSN) throws -> LSN

    /// The vault's point at `lsn` (a marker shipped there), nil while there is none.
    func point(at lsn: LSN) throws -> Int64?

    /// Keeps a note with a point (why it is crash-consistent though app-consistent was asked).
    func annotate(point id: Int64, note: String) throws

    /// Why the vault's own upkeep (compaction, retention) is failing, if it is.
    var maintenanceError: String? { get }

    /// Forgets any open handle or connection after a failure.
    func reset()

    /// Releases everything (the vault's upkeep stops, if this target runs it).
    func close()
}

extension ReplicaTarget {
    /// Sends one prepared segment and waits for the LSN the vault holds through after it.
    public func ship(_ segment: PreparedSegment, name: String) throws -> LSN { try send(segment, name: name).held() }
}

/// A segment sent to the vault whose answer may not have come yet.
public final class PendingShip: @unchecked Sendable {
    private let answer: () throws -> LSN

    /// `answer` waits for the vault's answer; it is called once.
    public init(answer: @escaping () throws -> LSN) { self.answer = answer }

    /// Waits for the vault's answer: the LSN it holds through once it holds the segment durably.
    /// Called once.
    public func held() throws -> LSN { try answer() }
}
