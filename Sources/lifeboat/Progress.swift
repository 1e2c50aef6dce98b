import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

/// Progress of a long copy on a terminal's stderr: percent, bytes, rate and time left,
/// redrawn at most ten times a second; silent when stderr is not a terminal.
final class Progress {
    private let what: String
    private var total: Int64
    private let terminal = isatty(STDERR_FILENO) == 1
    private let started = ContinuousClock.now
    private var lastDrawn = ContinuousClock.now - .seconds(1)
    private var drew = false

    /// `unit`: "bytes" (shown as sizes and a byte rate) or a count's name.
    private let unit: String

    init(what: String, total: Int64, unit: String = "bytes") {
        self.what = what
        self.total = max(total, 1)
        self.unit = unit
    }

    private func amount(_ n: Int64) -> String { unit == "bytes" ? humanBytes(n) : "\(n) \(unit)" }

    func update(_ done: Int64) {
        guard terminal, lastDrawn.duration(to: .now) >= .milliseconds(100) || done >= total else { return }
        lastDrawn = .now
        drew = true
        let elapsed = max(started.duration(to: .now).inSeconds, 0.001)
        let rate = Double(done) / elapsed
        let left = rate > 0 ? Double(total - done) / rate : 0
        let line = "\r\(what): \(done * 100 / total)% (\(amount(done)) of \(amount(total)), \(amount(Int64(rate)))/s, \(describeDuration(left)) left)  "
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// For work whose size is known only once it starts.
    func update(_ done: Int64, of total: Int64) {
        self.total = max(total, 1)
        update(done)
    }

    func finish() {
        if drew { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

