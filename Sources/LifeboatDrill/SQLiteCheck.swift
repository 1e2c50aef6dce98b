import Foundation
import GRDB
import LifeboatCore

/// `sqlite`: `PRAGMA integrity_check` on a database inside the target filesystem. Opened
/// read-write, as the application would: a hot rollback journal is rolled back and a WAL is
/// recovered first (onto the overlay), which is what the check must see. Past the timeout the
/// statement is interrupted.
enum SQLiteCheck {
    static func run(database path: String, check: CheckPlan) -> CheckResult {
        let start = Date()
        func result(_ passed: Bool, _ message: String, _ output: String = "") -> CheckResult {
            CheckResult(name: check.name, kind: .sqlite, status: passed ? .passed : .failed, seconds: Date().timeIntervalSince(start), message: message, outputTail: output)
        }
        guard FileManager.default.fileExists(atPath: path) else { return result(false, "no database at \(path)") }
        do {
            var config = Configuration()
            config.busyMode = .timeout(check.timeout)
            let queue = try DatabaseQueue(path: path, configuration: config)
            let timer = DispatchWorkItem { queue.interrupt() }
            DispatchQueue.global().asyncAfter(deadline: .now() + check.timeout, execute: timer)
            defer { timer.cancel() }
            let rows = try queue.inDatabase { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
            try queue.close()
            let output = rows.joined(separator: "\n")
            return rows == ["ok"] ? result(true, "integrity_check: ok") : result(false, "integrity_check: \(rows.first ?? "no answer")", output)
        } catch let e as DatabaseError where e.resultCode == .SQLITE_INTERRUPT {
            return result(false, "timed out after \(describeDuration(check.timeout))")
        } catch {
            return result(false, "\(error)")
        }
    }
}
