import CLinux
import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatCapture
import LifeboatSite
import LifeboatVault
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Builds crash states of the recorded site filesystem and checks each: it mounts (ext4 replays
/// its journal), the site recovers as `protect` would, `journal verify` finds the primaries
/// identical to the journal, every write whose fdatasync was acknowledged before the state's
/// cut reads back, no block holds anything but a whole written generation, and the vault
/// verifies.
struct CrashStateCheck {
    struct State {
        /// Everything up to this flush is kept.
        var openingFlush: LSN
        /// The flush that closes the interval (nil after the last one).
        var closingFlush: LSN?
        /// Writes of (opening, closing) kept in the state (drop-unflushed states only).
        var kept: [Recording.Write]
        var dropped: [LSN]

        var name: String {
            "after flush LSN \(openingFlush)" + (dropped.isEmpty ? "" : " + \(kept.count) later write(s), without LSN " + dropped.map { String($0.rawValue) }.joined(separator: ","))
        }
    }

    let recording: Recording
    let siteInImage: String
    let vaultInImage: String
    let diskNames: [String]
    let work: FilePath
    let mountpoint: FilePath
    let keepFailures: FilePath?
    /// Seconds spent per phase, for the report (where a state's time goes).
    let phases = LockedBox<[String: Double]>([:])

    private func timed<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        let start = ContinuousClock.now
        defer { let s = start.duration(to: .now).inSeconds; phases.update { $0[phase, default: 0] += s } }
        return try body()
    }

    /// Every flush boundary after the start mark, then states inside flush intervals.
    func states(count: Int, seed: UInt64) -> (states: [State], boundaries: Int, inside: Int) {
        let flushes = recording.flushes.filter { $0 > recording.startLSN }
        func closing(after i: Int) -> LSN? { i + 1 < flushes.count ? flushes[i + 1] : nil }
        var chosen: [State] = []
        // Half the states at flush boundaries (all of them when there are fewer), the rest inside intervals.
        let boundaryCount = min((count + 1) / 2, flushes.count)
        for k in 0..<boundaryCount {
            let i = boundaryCount == flushes.count ? k : Int((Double(k) * Double(flushes.count) / Double(boundaryCount)).rounded(.down))
            chosen.append(State(openingFlush: flushes[i], closingFlush: closing(after: i), kept: [], dropped: []))
        }
        var inside = 0
        if count > boundaryCount && flushes.count >= 2 {
            let closings = Array(flushes.dropFirst())
            let intervals = CrashStates.intervals(opening: flushes[0], closings: closings, writes: recording.writes.map(\.lsn))
            let writesByLSN = Dictionary(uniqueKeysWithValues: recording.writes.map { ($0.lsn, $0) })
            let openingOf = Dictionary(uniqueKeysWithValues: zip(closings, flushes))
            let intervalOf = Dictionary(uniqueKeysWithValues: intervals.map { ($0.closingLSN, $0) })
            if !intervals.isEmpty {
                for s in CrashStates.choose(from: intervals, count: count - boundaryCount, seed: seed) {
                    let interval = intervalOf[s.closingLSN]!
                    let dropped = Set(s.dropped)
                    chosen.append(State(openingFlush: openingOf[s.closingLSN]!, closingFlush: s.closingLSN,
                                        kept: interval.writes.filter { !dropped.contains($0) }.map { writesByLSN[$0]! }, dropped: s.dropped))
                    inside += 1
                }
            }
        }
        chosen.sort { $0.openingFlush < $1.openingFlush }
        return (chosen, boundaryCount, inside)
    }

    /// Checks every state (with `failFast`, up to the first that loses something); returns how
    /// many were checked and the findings (empty: nothing lost).
    func run(_ states: [State], failFast: Bool, progress: (Int, Int) -> Void) throws -> (checked: Int, findings: [(State, String)]) {
        let basePath = work.appending("base.img")
        let statePath = work.appending("state.img")
        try SparseImage.create(basePath, sizeBytes: recording.imageBytes)
        let base = try FileDescriptor.open(basePath, .readWrite, options: [.closeOnExec])
        defer { try? base.close() }
        var applied = 0  // recording.writes[..<applied] are in the base image
        var findings: [(State, String)] = []
        var checked = 0
        for (n, state) in states.enumerated() {
            while applied < recording.writes.count && recording.writes[applied].lsn <= state.openingFlush {
                try apply(recording.writes[applied], to: base)
                applied += 1
            }
            try timed("build") { try copy(base, to: statePath) }
            if !state.kept.isEmpty {
                let fd = try FileDescriptor.open(statePath, .readWrite, options: [.closeOnExec])
                defer { try? fd.close() }
                for write in state.kept { try apply(write, to: fd) }
            }
            if let finding = try check(statePath, mountpoint: mountpoint, state: state) {
                findings.append((state, finding))
                if let keep = keepFailures, findings.count <= 3 {
                    let kept = keep.appending("crash-state-\(findings.count).img")
                    try? SparseImage.copy(from: statePath, to: kept, sizeBytes: recording.imageBytes)
                }
            }
            checked = n + 1
            progress(checked, findings.count)
            if failFast && !findings.isEmpty { break }
        }
        return (checked, findings)
    }

    private func apply(_ write: Recording.Write, to fd: FileDescriptor) throws {
        _ = try recording.segments[write.segment].withUnsafeBytes { raw in
            try fd.writeAll(toAbsoluteOffset: Int64(write.firstBlock) * 4096,
                            UnsafeRawBufferPointer(rebasing: raw[write.dataOffset..<(write.dataOffset + write.blocks * 4096)]))
        }
    }

    /// A fresh copy of the base image: a reflink where the work directory's filesystem can
    /// (XFS, btrfs: instant), else a sparse copy of the data extents.
    private func copy(_ base: FileDescriptor, to path: FilePath) throws {
        _ = unlink(path.string)
        let out = try FileDescriptor.open(path, .readWrite, options: [.create, .exclusiveCreate, .closeOnExec], permissions: [.ownerReadWrite])
        defer { try? out.close() }
        if clinux_ficlone(out.rawValue, base.rawValue) == 0 { return }
        try out.resize(to: recording.imageBytes)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        try SparseImage.forEachDataPiece(of: base, sizeBytes: recording.imageBytes, buffer: buffer) { at, bytes in
            _ = try out.writeAll(toAbsoluteOffset: at, bytes)
        }
    }

    /// nil when the state passes, else what failed.
    private func check(_ image: FilePath, mountpoint: FilePath, state: State) throws -> String? {
        let deadline = ContinuousClock.now + .seconds(60)
        let mount = timed("mount") { ChildProcess.run(["mount", "-t", "ext4", "-o", "loop,noatime", image.string, mountpoint.string], deadline: deadline) }
        if let failure = mount.failure { return "the site filesystem does not mount: mount \(failure)" }
        // In its own function, so that every file the checks opened is closed before the unmount.
        let finding = checkMounted(mountpoint, state: state)
        try timed("umount") {
            let umount = ChildProcess.run(["umount", mountpoint.string], deadline: .now + .seconds(60))
            if let failure = umount.failure {
                throw LifeboatError(.io, "cannot unmount a crash state: umount \(failure); this process still has open: "
                                    + LinuxDevices.openFiles(under: mountpoint.string).joined(separator: ", "), path: mountpoint.string)
            }
        }
        return finding
    }

    private func checkMounted(_ mountpoint: FilePath, state: State) -> String? {
        do {
            let site = try Site.open(mountpoint.appending(siteInImage))
            do {
                let start = ContinuousClock.now
                defer { phases.update { $0["recover", default: 0] += start.duration(to: .now).inSeconds } }
                var options = ProtectionGroup.Options()
                options.ships = false
                let group = try ProtectionGroup.open(site: site, options: options, logger: Logger(label: "recover") { _ in SwiftLogNoOpLogHandler() })
                try group.close()
            } catch {
                return "protect does not recover: \(error)"
            }
            let verified = try timed("journal verify") { try JournalVerifier.verify(site: site) }
            if let bad = verified.disks.first(where: { $0.firstMismatch != nil || $0.firstDigestMismatch != nil }) {
                let detail = bad.firstMismatch.map { "block \($0.block): \($0.detail)" } ?? "digest leaf of block \(bad.firstDigestMismatch!)"
                return "journal verify: \(bad.name) differs from the journal in \(bad.mismatchedBlocks) block(s); first: \(detail)"
            }
            let lost = try timed("acknowledged") { try acknowledgedWritesMissing(site: site, before: state.closingFlush) }
            if let lost { return lost }
            let vault = try Vault(root: mountpoint.appending(vaultInImage))
            let report = try timed("vault verify") { try VaultVerifier.verify(vault) }
            if let problem = report.problems.first { return "vault verify: \(problem)" }
        } catch {
            return "\(error)"
        }
        return nil
    }

    /// Every block of the workload's disks holds a whole generation, and at least the newest
    /// one acknowledged before `closing` (all acknowledgements when nil).
    private func acknowledgedWritesMissing(site: Site, before closing: LSN?) throws -> String? {
        var newest: [Int: UInt64] = [:]  // disk << 32 | block → generation
        for ack in recording.acks {
            if let closing, ack.lsn >= closing { break }
            for e in ack.entries {
                let key = Int(e.disk) << 32 | Int(e.block)
                newest[key] = max(newest[key] ?? 0, e.generation)
            }
        }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { scratch.deallocate(); block.deallocate() }
        for (d, name) in diskNames.enumerated() {
            guard let config = site.config.disks.first(where: { $0.name == name }) else { return "the site has no disk '\(name)'" }
            let fd = try FileDescriptor.open(site.primaryPath(config), .readOnly, options: [.closeOnExec])
            defer { try? fd.close() }
            for b in 0..<config.blockCount {
                try fd.readAll(at: Int64(b) * 4096, into: block)
                guard let generation = BlockPattern.generation(of: UnsafeRawBufferPointer(block), disk: UInt32(d), index: UInt32(b), scratch: scratch) else {
                    return "\(name) block \(b) holds neither a written generation nor zeros (torn or misplaced)"
                }
                if let want = newest[d << 32 | b], generation < want {
                    return "\(name) block \(b): generation \(generation), but generation \(want) was acknowledged (its fdatasync returned) before the cut: an acknowledged write was lost"
                }
            }
        }
        return nil
    }
}
