/// Objects that are not thread-safe, lent to one thread at a time: an idle one is taken, or a
/// new one made on first need, and given back after (point readers with their decompression
/// context, FUSE workers with their scratch buffers).
public final class IdlePool<Item>: @unchecked Sendable {
    private let make: () throws -> Item
    private let lock = ConditionLock()
    private var idle: [Item]

    /// `first` is made now (so that what cannot be made fails here); later ones by `make`.
    public init(first: Item, make: @escaping () throws -> Item) {
        self.make = make
        idle = [first]
        idle.reserveCapacity(64)
    }

    public func with<T>(_ body: (Item) throws -> T) throws -> T {
        let item = try lock.withLock { idle.popLast() } ?? make()
        defer { lock.withLock { idle.append(item) } }
        return try body(item)
    }
}
