import LifeboatCore
import LifeboatJournal
import LifeboatSite

/// The source's part of a planned failover (decision 0012, the model's `Host` drain): writes
/// stop first, then the final marker, so every write acknowledged is at or below it.
extension ProtectionGroup {
    /// Stops serving writes (durably), appends the final marker with the apply lock held
    /// exclusively — every write in flight finishes before it, none starts after — seals it for
    /// the shipper and records its LSN. Called again, it returns the same LSN.
    func drainForPlannedFailover() throws -> LSN {
        if let final = fence.generation.draining?.finalLSN { return LSN(final) }
        if let why = overflow?.pointsPaused ?? fillingReason { throw LifeboatError(.busy, "cannot drain for a planned failover yet: \(why)") }
        try fence.startDraining()
        let (lsn, _) = try appendMarker(.crashConsistent, label: "final: planned failover", endsResync: false)
        try fence.drained(at: lsn)
        logger.notice("drained for a planned failover: no more writes are served here; final point at LSN \(lsn)")
        return lsn
    }
}
