import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatCapture
import LifeboatSite
import Logging
import SystemPackage

struct Lifeboat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifeboat",
        abstract: "Disaster recovery for virtual disks: protect, vault, drill.",
        discussion: "Exit codes are listed in Docs/operations.md.",
        version: "0.1.0",
        subcommands: [InitCommand.self, DiskCommand.self, ProtectCommand.self, StatusCommand.self, JournalCommand.self,
                      PointsCommand.self, ExportCommand.self, VaultCommand.self, CheckpointCommand.self, MountCommand.self,
                      DrillCommand.self, DrillWorkerCommand.self, GuestAgentCommand.self, FailoverCommand.self, ReprotectCommand.self, FailbackCommand.self])
}

/// `--site`, defaulting from LIFEBOAT_SITE.
struct SiteOption: ParsableArguments {
    @Option(name: .long, help: "The site directory (default: $LIFEBOAT_SITE).")
    var site: String?

    func path() throws -> String {
        if let site { return site }
        if let env = ProcessInfo.processInfo.environment["LIFEBOAT_SITE"], !env.isEmpty { return env }
        throw ValidationError("no site given: pass --site DIR or set LIFEBOAT_SITE")
    }

    func open() throws -> Site { try Site.open(FilePath(path())) }
}

func makeLogger() -> Logger {
    var logger = Logger(label: "lifeboat") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = ProcessInfo.processInfo.environment["LIFEBOAT_DEBUG"] == nil ? .info : .debug
    return logger
}

/// Sizes as qemu-img takes them: a number of bytes with an optional binary suffix K, M, G, T.
func parseSize(_ text: String) throws -> Int64 {
    let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var digits = text.uppercased()
    var multiplier: Int64 = 1
    if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") && digits.count > 1 && units[digits[digits.index(digits.endIndex, offsetBy: -2)]] != nil { digits.removeLast() }
    if let last = digits.last, let unit = units[last] {
        multiplier = unit
        digits.removeLast()
    }
    guard let value = Int64(digits), value > 0, value <= Int64.max / multiplier else {
        throw ValidationError("'\(text)' is not a size: use bytes or a number with K, M, G or T (binary units)")
    }
    return value * multiplier
}

func printJSON<T: Encodable>(_ value: T) throws {
    print(String(decoding: try LifeboatJSON.encoder().encode(value), as: UTF8.self))
}

/// Human amounts for tables and progress: 4.0 GiB, 512.0 MiB, 4096 B.
func humanBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(n)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
}

/// A disk's size, which must not be rounded into another disk's (67108864 and 67125248 are
/// not both "64.0 MiB"): one decimal when exact, else two, else the bytes as well.
func diskSize(_ n: Int64) -> String {
    let approximate = humanBytes(n)
    guard n >= 1024 else { return approximate }
    let unit = Double(1 << (10 * min(4, Int(log2(Double(n)) / 10))))
    for decimals in [1, 2] {
        let text = String(format: "%.\(decimals)f", Double(n) / unit)
        if let shown = Double(text), (shown * unit).rounded() == Double(n) { return decimals == 1 ? approximate : "\(text) \(approximate.split(separator: " ").last!)" }
    }
    return "\(approximate) (\(n) B)"
}
