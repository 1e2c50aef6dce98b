import Foundation
import LifeboatCore

/// Reads the next chunk on a second thread while the caller's thread handles the current one
/// (two buffers): an export decompresses from the vault while it writes the image.
enum ChunkPipeline {
    /// Calls `produce(i, buffer)` for i in 0..<count on a helper thread and `consume(i, buffer)`
    /// on the calling thread, in order. The first error stops both and is rethrown.
    static func run(count: Int, bufferBytes: Int,
                    produce: @escaping (Int, UnsafeMutableRawBufferPointer) throws -> Void,
                    consume: (Int, UnsafeMutableRawBufferPointer) throws -> Void) throws {
        // The producer only touches buffer i % 2 between `free` and `full`, the consumer only
        // between `full` and `free`: the semaphores hand each buffer over, so sharing is safe.
        nonisolated(unsafe) let buffers = (0..<2).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: bufferBytes, alignment: 4096) }
        nonisolated(unsafe) let produce = produce
        defer { buffers.forEach { $0.deallocate() } }
        let free = DispatchSemaphore(value: 2), full = DispatchSemaphore(value: 0)
        let state = ConditionLock()
        nonisolated(unsafe) var producerError: Error?
        nonisolated(unsafe) var stop = false
        let producer = try JoinableThread(name: "lifeboat-reader") {
            for i in 0..<count {
                free.wait()
                if state.withLock({ stop }) { break }
                do { try produce(i, buffers[i % 2]) } catch {
                    state.withLock { producerError = error }
                    full.signal()
                    return
                }
                full.signal()
            }
        }
        var consumerError: Error?
        for i in 0..<count {
            full.wait()
            if let e = state.withLock({ producerError }) { consumerError = e; break }
            do { try consume(i, buffers[i % 2]) } catch { consumerError = error; break }
            free.signal()
        }
        state.withLock { stop = true }
        free.signal(); free.signal()
        producer.join()
        if let consumerError { throw consumerError }
    }
}
