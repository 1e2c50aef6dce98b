import Foundation
import LifeboatCore
import SystemPackage

/// `SITE/state/checkpoint.json`: every journal record up to `appliedLSN` is durable in the
/// primaries and the digest sidecars, so recovery replays only the records after it.
/// `cleanStop` is true only after `protect` drained and stopped normally. `activity` lists the
/// regions written in the checkpoint epoch that ended here (the activity log, see
/// `ActivityLog`): after an unclean stop, recovery re-journals them.
public struct Checkpoint: Codable, Equatable, Sendable {
    public struct Activity: Codable, Equatable, Sendable {
        /// Blocks per region (4 KiB each).
        public var regionBlocks: Int
        /// Disk id (decimal) → region indexes, ascending.
        public var regions: [String: [Int]]

        public init(regionBlocks: Int, regions: [String: [Int]]) {
            self.regionBlocks = regionBlocks
            self.regions = regions
        }
    }

    public var appliedLSN: LSN
    public var cleanStop: Bool
    /// Absent in checkpoints written before the activity log (then recovery cannot know which
    /// regions to re-journal, and says so).
    public var activity: Activity?

    public init(appliedLSN: LSN, cleanStop: Bool, activity: Activity? = nil) {
        self.appliedLSN = appliedLSN
        self.cleanStop = cleanStop
        self.activity = activity
    }

    package static func path(in state: FilePath) -> FilePath { state.appending("checkpoint.json") }

    public static func load(from state: FilePath) throws -> Checkpoint {
        let path = Self.path(in: state)
        let data: [UInt8]
        do { data = try readWholeFile(path) } catch {
            throw error == .noSuchFileOrDirectory ? LifeboatError(.notFound, "missing checkpoint", path: path.string)
                                                  : LifeboatError.system(error, "cannot read the checkpoint", path: path.string)
        }
        do { return try JSONDecoder().decode(Checkpoint.self, from: Data(data)) } catch {
            throw LifeboatError(.corrupt, "checkpoint is not valid", path: path.string, cause: error)
        }
    }

    package func save(in state: FilePath) throws {
        let data: Data
        do { data = try JSONEncoder().encode(self) } catch { throw LifeboatError(.internalError, "cannot encode the checkpoint", cause: error) }
        try writeFileAtomically(Self.path(in: state), Array(data))
    }
}
