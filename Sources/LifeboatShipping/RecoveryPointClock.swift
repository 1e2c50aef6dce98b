import LifeboatCore

/// How far behind the vault is, in time — the RPO `status` shows, stated conservatively. The
/// shipper samples the journal's durable LSN on its every wake (10 a second); everything that
/// was durable at a sample whose LSN the vault now holds is in the vault, so the oldest write
/// the vault may lack became durable after the newest such sample: RPO = now − that sample's
/// time (0 when the vault holds all that is durable). While the shipper is stuck in a call (a
/// partition), no sample is taken and the figure grows with the clock: never less than the
/// truth, by at most one sampling interval more.
struct RecoveryPointClock {
    private var samples: [(at: ContinuousClock.Instant, durable: LSN)] = []
    private var first = 0
    /// An hour of samples at 10 a second; past that the oldest are kept (they set the figure).
    static let capacity = 36_000

    init(now: ContinuousClock.Instant = .now) { samples.append((now, .zero)) }

    mutating func sample(durable: LSN, at now: ContinuousClock.Instant = .now) {
        guard let last = samples.last, durable > last.durable, samples.count - first < Self.capacity else { return }
        samples.append((now, durable))
    }

    /// The vault holds through `shipped`: the samples before the newest one it covers go.
    mutating func shipped(_ shipped: LSN) {
        while first + 1 < samples.count, samples[first + 1].durable <= shipped { first += 1 }
        if first > 4096 {
            samples.removeFirst(first)
            first = 0
        }
    }

    func rpo(durable: LSN, shipped: LSN, now: ContinuousClock.Instant = .now) -> Duration {
        guard durable > shipped else { return .zero }
        return samples[first].at.duration(to: now)
    }
}
