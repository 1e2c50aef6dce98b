import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

/// Progress of a long copy on a terminal's stderr: percent, bytes, rate and time left,
/// redrawn at most ten times a second; silent when stderr is not a terminal.
final class Progress {
    private let what: String
    private let total: Int64
    private let terminal = isatty(STDERR_FILENO) == 1
    private let started = ContinuousClock.now
    private var lastDrawn = ContinuousClock.now - .seconds(1)
    private var drew = false

    init(what: String, total: Int64) {
        self.what = what
        self.total = max(total, 1)
    }

    func update(_ done: Int64) {
        guard terminal, lastDrawn.duration(to: .now) >= .milliseconds(100) || done >= total else { return }
        lastDrawn = .now
        drew = true
        let elapsed = max(seconds(started.duration(to: .now)), 0.001)
        let rate = Double(done) / elapsed
        let left = rate > 0 ? Double(total - done) / rate : 0
        let line = "\r\(what): \(done * 100 / total)% (\(humanBytes(done)) of \(humanBytes(total)), \(humanBytes(Int64(rate)))/s, \(describeDuration(left)) left)  "
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if drew { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
