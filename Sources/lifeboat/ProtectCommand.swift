import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatCapture
import LifeboatJournal
import LifeboatShipping
import LifeboatSite
import SystemPackage

struct ProtectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protect",
        abstract: "Expose the site's disks as MOUNTPOINT/NAME.img and journal every write (foreground).",
        discussion: "SIGINT/SIGTERM (or fusermount3 -u) unmount, drain the journal and exit 0.")

    @Argument(help: "An existing, empty directory.") var mountpoint: String
    @OptionGroup var site: SiteOption
    @Option(help: "Seal a journal segment at this size (1M to 4G; bytes or K/M/G).") var segmentSize = "64M"
    @Option(help: "Seal a journal segment at least this often while there are writes (e.g. 1s, 500ms as 0.5).") var sealInterval = "1s"
    @Option(help: "Mark a crash-consistent point this often while there are writes (at least 0.2s).") var pointInterval = "3s"
    @Option(help: "Make the primaries durable and record how far this often while there are writes (at least 0.2s): bounds the replay after a crash.") var checkpointInterval = "5s"

    @Option(help: ArgumentHelp("What shipping may use of the link to a vault on another machine: 20MB/s, or 20MB/s 08:00-18:00 (local time; unlimited otherwise), windows separated by commas.",
                               valueName: "rate")) var bandwidth: String?

    @Option(help: ArgumentHelp("Unshipped journal kept while the vault cannot take it (bytes or K/M/G/T, or 'unlimited'); past it, journal is dropped, the regions it wrote tracked and resynced when the vault is back (default: half the space free on the journal's file system).",
                               valueName: "size")) var spoolLimit: String?

    @Option(help: .hidden) var spareFill: SpareFill = .adaptive

    func validate() throws {
        let segmentBytes = try parseSize(segmentSize)
        guard segmentBytes >= 1 << 20, segmentBytes <= 4 << 30 else { throw ValidationError("--segment-size must be between 1M and 4G") }
        _ = try parseDuration(sealInterval, what: "seal interval")
        guard try parseDuration(pointInterval, what: "point interval") >= 0.2 else { throw ValidationError("--point-interval must be at least 0.2s") }
        guard try parseDuration(checkpointInterval, what: "checkpoint interval") >= 0.2 else { throw ValidationError("--checkpoint-interval must be at least 0.2s") }
        if let bandwidth { _ = try BandwidthSchedule(parsing: bandwidth) }
        if let limit = try parsedSpoolLimit(), limit != .max {
            guard limit >= 2 * (try parseSize(segmentSize)) else { throw ValidationError("--spool-limit must be at least two segments (--segment-size \(segmentSize))") }
        }
    }

    private func parsedSpoolLimit() throws -> Int64? {
        guard let spoolLimit else { return nil }
        return spoolLimit.lowercased() == "unlimited" ? .max : try parseSize(spoolLimit)
    }

    func run() throws {
        try ProtectService.requireRoot()
        var options = ProtectionGroup.Options()
        options.segmentBytes = try parseSize(segmentSize)
        options.sealInterval = .milliseconds(Int64(try parseDuration(sealInterval) * 1000))
        options.pointInterval = .milliseconds(Int64(try parseDuration(pointInterval) * 1000))
        options.checkpointInterval = .milliseconds(Int64(try parseDuration(checkpointInterval) * 1000))
        options.spareFill = spareFill
        options.bandwidth = try bandwidth.map(BandwidthSchedule.init(parsing:))
        options.spoolLimit = try parsedSpoolLimit()
        try ProtectService.run(site: try site.open(), mountpoint: absolutePath(mountpoint), options: options, logger: makeLogger())
    }
}

/// `--spare-fill adaptive|zeros|reserved` (hidden): the power-loss harness proves each way.
extension SpareFill: ExpressibleByArgument {}
