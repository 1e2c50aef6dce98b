import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Concurrent writers on protected disks: each owns every `writers`-th 64 KiB chunk, writes
/// runs of 1–4 blocks of `BlockPattern` content with rising generations, fdatasyncs every
/// `syncEvery` writes on average, and then writes an `AckBlock` listing what that fdatasync made durable.
struct Workload {
    var disks: [FilePath]
    var acks: FilePath
    var writers: Int
    var seconds: Double
    var seed: UInt64
    /// Writes per fdatasync, on average.
    var syncEvery: Int

    static let chunkBlocks = 16

    func run() throws {
        let diskFDs = try disks.map { try FileDescriptor.open($0, .readWrite, options: [.closeOnExec]) }
        let ackFD = try FileDescriptor.open(acks, .readWrite, options: [.closeOnExec])
        defer { diskFDs.forEach { try? $0.close() }; try? ackFD.close() }
        let blockCounts = try diskFDs.map { Int(try $0.fileSize()) / BlockPattern.bytes }
        let ackSlots = (Int(try ackFD.fileSize()) / BlockPattern.bytes - 1) / writers
        guard ackSlots > 0, blockCounts.allSatisfy({ $0 >= Self.chunkBlocks * writers }) else {
            throw LifeboatError(.invalidArgument, "disks too small for \(writers) writers")
        }
        // The start mark: the checker's crash states begin after it.
        try withUnsafeTemporaryAllocation(byteCount: BlockPattern.bytes, alignment: 4096) { block in
            block.initializeMemory(as: UInt8.self, repeating: 0)
            block.storeBytes(of: AckBlock.startMagic.littleEndian, toByteOffset: 0, as: UInt64.self)
            _ = try ackFD.writeAll(toAbsoluteOffset: 0, UnsafeRawBufferPointer(block))
        }
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let failures = LockedBox<[String]>([])
        let counts = LockedBox<(writes: Int, acks: Int)>((0, 0))
        // One thread per writer (blocking I/O: a thread pool sized to the cores would serialize them).
        let done = DispatchGroup()
        for w in 0..<writers {
            done.enter()
            Thread {
                defer { done.leave() }
                do {
                    let (writes, acked) = try writer(w, diskFDs: diskFDs, blockCounts: blockCounts, ackFD: ackFD, ackSlots: ackSlots, deadline: deadline)
                    counts.update { $0.writes += writes; $0.acks += acked }
                } catch {
                    failures.update { $0.append("writer \(w): \(error)") }
                }
            }.start()
        }
        done.wait()
        if let first = failures.value.first { throw LifeboatError(.io, first) }
        print("workload: \(counts.value.writes) writes, \(counts.value.acks) fsyncs acknowledged, \(writers) writers, \(disks.count) disks")
    }

    private func writer(_ w: Int, diskFDs: [FileDescriptor], blockCounts: [Int], ackFD: FileDescriptor, ackSlots: Int,
                        deadline: ContinuousClock.Instant) throws -> (Int, Int) {
        var random = SplitMix64(seed: seed &+ UInt64(w) &* 0x9E37_79B9)
        var generations = blockCounts.map { [UInt64](repeating: 0, count: $0) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 * BlockPattern.bytes, alignment: 4096)
        defer { buffer.deallocate() }
        var pending: [AckBlock.Entry] = []
        var touched = Set<Int>()
        var writes = 0
        var slot = 0
        while ContinuousClock.now < deadline && slot < ackSlots {
            let d = Int(random.next() % UInt64(diskFDs.count))
            let chunks = blockCounts[d] / Self.chunkBlocks
            let owned = (chunks - 1 - w) / writers + 1
            let chunk = w + writers * Int(random.next() % UInt64(owned))
            let offset = Int(random.next() % UInt64(Self.chunkBlocks))
            let length = 1 + Int(random.next() % UInt64(min(4, Self.chunkBlocks - offset)))
            let first = chunk * Self.chunkBlocks + offset
            for k in 0..<length {
                generations[d][first + k] += 1
                let g = generations[d][first + k]
                BlockPattern.fill(UnsafeMutableRawBufferPointer(rebasing: buffer[(k * BlockPattern.bytes)..<((k + 1) * BlockPattern.bytes)]),
                                  disk: UInt32(d), block: UInt32(first + k), generation: g)
                pending.append(.init(disk: UInt32(d), block: UInt32(first + k), generation: g))
            }
            _ = try diskFDs[d].writeAll(toAbsoluteOffset: Int64(first * BlockPattern.bytes),
                                        UnsafeRawBufferPointer(rebasing: buffer[0..<(length * BlockPattern.bytes)]))
            writes += 1
            touched.insert(d)
            // fdatasync every few writes (or when the ack block would overflow), then ack.
            if random.next() % UInt64(syncEvery) == 0 || pending.count + 8 > AckBlock.capacity {
                for t in touched.sorted() { try diskFDs[t].dataSync() }
                AckBlock.encode(pending, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<BlockPattern.bytes]))
                _ = try ackFD.writeAll(toAbsoluteOffset: Int64((1 + w * ackSlots + slot) * BlockPattern.bytes),
                                       UnsafeRawBufferPointer(rebasing: buffer[0..<BlockPattern.bytes]))
                slot += 1
                pending.removeAll(keepingCapacity: true)
                touched.removeAll(keepingCapacity: true)
            }
        }
        return (writes, slot)
    }
}

/// A value behind a lock, for the few counters the writer threads share.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func update(_ body: (inout Value) -> Void) { lock.withLock { body(&stored) } }
}
