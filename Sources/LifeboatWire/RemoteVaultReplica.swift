import Foundation
import Synchronization
import LifeboatCore
import LifeboatIdentity
import LifeboatShipping
import LifeboatVault
import LifeboatWireFormat
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import SystemPackage
import X509

#if canImport(Glibc)
import Glibc
#endif

/// The vault on another machine (`lifeboat://HOST:PORT`), as the shipper sees any vault: a
/// `ReplicaTarget` over one mutual-TLS connection made with the site's bundle. Requests are
/// written one after another (the shipper's thread, and the control socket's for `point(at:)`)
/// and answered in that order; a caller waits for its own answer outside the lock, so that the
/// shipper can send the next segment while the vault ingests the one before (`send`). Each
/// answer has a deadline; a failure drops the connection — every request still waiting on it
/// fails with it — and the next call makes a new one. Segments cross the wire zstd-compressed
/// (level 1).
public final class RemoteVaultReplica: ReplicaTarget, @unchecked Sendable {
    public let address: String
    private let bundle: SiteBundle
    private let host: String
    private let port: Int
    private let context: NIOSSLContext
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let lock = ConditionLock()
    private var connection: Connection?
    /// Its own lock, not the connection's: `status` reads it while a call may hang until its
    /// deadline (a partition), and must not wait for that.
    private let lastMaintenanceError = Mutex<String?>(nil)
    /// `--bandwidth`: what sends may use of the link, paced in slices as they are written.
    public let pacer: Pacer?
    /// How long a call may take: 10 s, and a second more per 4 MB it sends (a 64 MiB segment
    /// gets 27 s), and the time the pacer makes it take. A partition without a reset is found by
    /// this, not by TCP's minutes.
    func timeout(sending bytes: Int) -> TimeAmount {
        let paced = pacer?.currentRate.map { Double(bytes) / $0 } ?? 0
        return .seconds(10) + .milliseconds(Int64(bytes / 4_000) + Int64(paced * 1000))
    }

    /// Who this site is in the group's history: sent with every request.
    private let writer: WriterClaim

    public init(bundle: SiteBundle, bandwidth: BandwidthSchedule? = nil, writer: WriterClaim = .original) throws {
        pacer = bandwidth.map(Pacer.init)
        self.writer = writer
        guard let vault = bundle.vault, let (host, port) = bundle.hostAndPort else {
            throw LifeboatError(.invalidArgument, "the site's bundle names no vault address (enroll with --address lifeboat://HOST:PORT)")
        }
        self.bundle = bundle
        self.address = vault
        self.host = host
        self.port = port
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        // The vault's own CA, and no other: a certificate of the system's roots is not the vault.
        tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: Array(bundle.ca.utf8), format: .pem)])
        tls.certificateVerification = .noHostnameVerification
        tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: Array(bundle.certificate.utf8), format: .pem))]
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(bundle.key.utf8), format: .pem))
        context = try NIOSSLContext(configuration: tls)
    }

    deinit { try? group.syncShutdownGracefully() }

    // MARK: ReplicaTarget

    public func groupID() throws -> String? { try state().groupID }

    /// The disks the vault holds (`disk remove` asks before it removes one).
    public func diskIDs() throws -> Set<DiskID> { try state().diskIDs }

    public func heldThrough() throws -> LSN { try state().heldThrough }

    public func standing() throws -> WriterStanding { try state().standing }

    /// One `state` request: the vault answers all four questions in it.
    public func state() throws -> ReplicaState {
        let r = try call(WireRequest(op: "state"))
        lastMaintenanceError.withLock { $0 = r.maintenanceError }
        let standing: WriterStanding = if let why = r.fenced { .fenced(why) } else if r.drainAsked == true { .drainAsked } else { .owner }
        return ReplicaState(groupID: r.group, diskIDs: Set((r.disks ?? []).map { DiskID($0) }),
                            heldThrough: LSN(r.heldThrough ?? 0), standing: standing)
    }

    public func reportDrained(at lsn: LSN) throws {
        var request = WireRequest(op: "drained")
        request.lsn = lsn.rawValue
        _ = try call(request)
    }

    public func addDisk(group: String, id: DiskID, name: String, sizeBytes: Int64, initialContent: FilePath, progress: (Int64) -> Void) throws {
        var request = WireRequest(op: "addDiskBegin")
        request.group = group
        request.disk = id.rawValue
        request.sizeBytes = sizeBytes
        _ = try call(request)
        let fd = try FileDescriptor.open(initialContent, .readOnly, options: [.closeOnExec])
        defer { try? fd.close() }
        var chunk = [UInt8](repeating: 0, count: 4 << 20)
        var at: Int64 = 0
        while at < sizeBytes {
            let n = Int(min(Int64(chunk.count), sizeBytes - at))
            try chunk.withUnsafeMutableBytes { try fd.readAll(at: at, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), zeroFillPastEOF: true) }
            // Holes stay holes: the vault's file is sparse, all-zero chunks are not sent.
            if chunk[0..<n].contains(where: { $0 != 0 }) {
                var piece = WireRequest(op: "addDiskChunk")
                piece.group = group
                piece.disk = id.rawValue
                piece.offset = at
                _ = try call(piece, body: try chunk[0..<n].withUnsafeBytes { try Zstd.compress($0, level: 1) })
            }
            at += Int64(n)
            progress(at)
        }
        var end = WireRequest(op: "addDiskEnd")
        end.group = group
        end.disk = id.rawValue
        end.name = name
        end.sizeBytes = sizeBytes
        _ = try call(end)
    }

    public func prepare(segment: [UInt8]) throws -> PreparedSegment {
        PreparedSegment(bytes: try segment.withUnsafeBytes { try Zstd.compress($0, level: 1) })
    }

    public func send(_ segment: PreparedSegment, name: String) throws -> PendingShip {
        var request = WireRequest(op: "ship")
        request.name = (name as NSString).lastPathComponent
        let posted = try post(request, body: segment.bytes)
        return PendingShip { [self] in
            guard let held = try answer(to: posted).0.heldThrough else {
                throw LifeboatError(.io, "the vault at \(address) answered ship without the LSN it holds through")
            }
            return LSN(held)
        }
    }

    public func append(records: [UInt8], firstLSN: LSN, name: String) throws -> LSN {
        var request = WireRequest(op: "append")
        request.name = (name as NSString).lastPathComponent
        request.lsn = firstLSN.rawValue
        return LSN(try call(request, body: try records.withUnsafeBytes { try Zstd.compress($0, level: 1) }).heldThrough ?? 0)
    }

    public func openResync(resumingAt: LSN) throws -> LSN {
        var request = WireRequest(op: "openResync")
        request.lsn = resumingAt.rawValue
        return LSN(try call(request).heldThrough ?? 0)
    }

    public func point(at lsn: LSN) throws -> Int64? {
        var request = WireRequest(op: "pointAt")
        request.lsn = lsn.rawValue
        return try call(request).pointID
    }

    public func annotate(point id: Int64, note: String) throws {
        var request = WireRequest(op: "annotate")
        request.point = id
        request.note = note
        _ = try call(request)
    }

    public var maintenanceError: String? { lastMaintenanceError.withLock { $0 } }

    /// The site's points as the vault lists them (`points --site SITE` on the site host).
    public func points() throws -> PointListing {
        let (_, body) = try exchange(WireRequest(op: "points"))
        return try WireJSON.decode(PointListing.self, body)
    }

    public func reset() {
        lock.withLock {
            connection?.close()
            connection = nil
        }
    }

    public func close() { reset() }

    // MARK: Calls

    /// One request and its answer; the vault's refusal becomes a LifeboatError with its words.
    @discardableResult
    func call(_ request: WireRequest, body: [UInt8] = []) throws -> WireResponse { try exchange(request, body: body).0 }

    /// One request, its answer and the answer's body.
    func exchange(_ request: WireRequest, body: [UInt8] = []) throws -> (WireResponse, [UInt8]) {
        try answer(to: try post(request, body: body))
    }

    /// A request written to the connection, its answer still to come.
    struct Posted {
        let op: String
        let connection: Connection
        let answer: EventLoopFuture<WireFrame>
    }

    /// Writes one request (connecting first if needed) and returns without its answer. The
    /// lock orders the writes, and so the answers.
    private func post(_ request: WireRequest, body: [UInt8]) throws -> Posted {
        try lock.withLock {
            do {
                let c = try connection ?? connect()
                connection = c
                var request = request
                request.generation = writer.generation
                request.owner = writer.owner
                let answer = try c.send(header: WireJSON.encode(request), body: body, timeout: timeout(sending:), pacer: pacer)
                return Posted(op: request.op, connection: c, answer: answer)
            } catch {
                connection?.close()
                connection = nil
                throw described(error)
            }
        }
    }

    /// Waits for a posted request's answer; the vault's refusal becomes a LifeboatError with its
    /// words. Any failure drops that connection (the requests behind it fail with it).
    private func answer(to posted: Posted) throws -> (WireResponse, [UInt8]) {
        do {
            let response = try posted.answer.wait()
            let decoded = try WireJSON.decode(WireResponse.self, response.header)
            guard decoded.ok else {
                // A fence keeps its code: the shipper fences the site on it.
                throw LifeboatError(decoded.code == LifeboatError.Code.fenced.rawValue ? .fenced : .io,
                                    "the vault at \(address) refused \(posted.op): \(decoded.error ?? "no reason given")")
            }
            return (decoded, response.body)
        } catch {
            lock.withLock {
                posted.connection.close()
                if connection === posted.connection { connection = nil }
            }
            throw described(error)
        }
    }

    private func described(_ error: any Error) -> LifeboatError {
        error as? LifeboatError ?? LifeboatError(.io, "the vault at \(address): \(Self.describe(error))")
    }

    /// BoringSSL's reasons, as the site sees them, in words (the vault's side: `VaultConnectionHandler.describe`).
    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        let reasons: [(String, String)] = [
            ("ALERT_CERTIFICATE_EXPIRED", "the vault refused this site's certificate: it has expired (enroll the site again)"),
            ("ALERT_UNKNOWN_CA", "the vault does not trust this site's certificate: a bundle from another vault"),
            ("ALERT_BAD_CERTIFICATE", "the vault refused this site's certificate"),
            ("ALERT_CERTIFICATE_REQUIRED", "the vault asks for a client certificate"),
            ("ALERT_BAD_RECORD_MAC", "the vault found the TLS stream tampered with or replayed on the way"),
            ("ALERT_DECRYPTION_FAILED", "the vault found the TLS stream tampered with or replayed on the way"),
            ("CERTIFICATE_VERIFY_FAILED", "the server's certificate is not of this site's vault (another CA, or expired)"),
            ("BAD_RECORD_MAC", "the TLS stream from the vault was tampered with or replayed on the way"),
            ("DECRYPTION_FAILED", "the TLS stream from the vault was tampered with or replayed on the way"),
            ("WRONG_VERSION_NUMBER", "not a TLS server: is it `lifeboat vault serve`?"),
            ("uncleanShutdown", "the connection was cut without TLS's close: the vault dropped it (its log says why), or something on the path did"),
        ]
        if let (_, words) = reasons.first(where: { text.contains($0.0) }) { return "\(words) (\(text))" }
        return text
    }

    private func connect() throws -> Connection {
        let responses = ResponseHandler()
        let context = self.context
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WireFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(responses)
                }
            }
        let channel: Channel
        let peer: [UInt8]?
        do {
            channel = try bootstrap.connect(host: host, port: port).wait()
            peer = try responses.handshake(on: channel.eventLoop, timeout: .seconds(10)).wait()
        } catch {
            throw LifeboatError(.io, "cannot reach the vault at \(address): \((error as? LifeboatError)?.description ?? Self.describe(error))")
        }
        // The chain is the vault CA's; the certificate must also be the vault's own, not a
        // site's of the same CA (an enrolled site must not be able to pose as the vault).
        guard let der = peer else {
            channel.close(promise: nil)
            throw LifeboatError(.io, "the vault at \(address): no server certificate known after the TLS handshake")
        }
        guard let certificate = try? Certificate(derEncoded: der), SiteBundle.namesTheVault(certificate) else {
            channel.close(promise: nil)
            throw LifeboatError(.permission, "the server at \(address) has a certificate of this vault's CA that is not the vault's (no URI \(SiteBundle.vaultURI)): refused")
        }
        return Connection(channel: channel, responses: responses)
    }

    final class Connection: Sendable {
        let channel: Channel
        let responses: ResponseHandler
        /// The bytes of requests sent whose answers have not come: a request's deadline counts
        /// the ones ahead of it, which the vault answers first.
        private let awaiting = Mutex(0)

        init(channel: Channel, responses: ResponseHandler) {
            self.channel = channel
            self.responses = responses
        }

        /// Writes one frame — paced in 256 KiB slices when there is a pacer, so that a throttled
        /// link is never taken whole even by a large segment — and returns its answer to come,
        /// which fails after the deadline `timeout` gives for the bytes sent and those ahead.
        func send(header: [UInt8], body: [UInt8], timeout: (Int) -> TimeAmount, pacer: Pacer?) throws -> EventLoopFuture<WireFrame> {
            let loop = channel.eventLoop
            let promise = loop.makePromise(of: WireFrame.self)
            let size = 8 + header.count + body.count
            let ahead = awaiting.withLock { waiting in
                defer { waiting += size }
                return waiting
            }
            let deadline = timeout(ahead + size)
            responses.expect(promise, on: loop)
            let timer = loop.scheduleTask(in: deadline) {
                promise.fail(LifeboatError(.io, "no answer within \(deadline.nanoseconds / 1_000_000_000) s"))
            }
            promise.futureResult.whenComplete { [self] _ in
                timer.cancel()
                awaiting.withLock { $0 -= size }
            }
            // Written into the channel's buffer at once: one copy of the body, not two.
            var frame = channel.allocator.buffer(capacity: size)
            frame.writeInteger(UInt32(size - 4))
            frame.writeInteger(UInt32(header.count))
            frame.writeBytes(header)
            frame.writeBytes(body)
            if let pacer {
                let slice = 256 << 10
                for start in stride(from: 0, to: size, by: slice) {
                    let length = min(slice, size - start)
                    pacer.take(length)
                    try channel.writeAndFlush(frame.getSlice(at: start, length: length)!).wait()
                }
            } else {
                channel.writeAndFlush(frame).cascadeFailure(to: promise)
            }
            return promise.futureResult
        }

        func close() { channel.close(promise: nil) }
    }

    /// Hands each answer to the request waiting for it; a closed connection or a TLS error fails it.
    final class ResponseHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = WireFrame
        /// The requests written whose answers have not come, oldest first: answers come in order.
        private var waiting: [EventLoopPromise<WireFrame>] = []
        private var handshakeDone: EventLoopPromise<[UInt8]?>?
        /// The server's certificate (DER), taken when the handshake completes — not asked of
        /// the TLS handler later, which a server closing at once has already taken away.
        private var handshook = false
        private var peer: [UInt8]?
        /// Why the connection ended before anyone asked for the handshake, if it did: the
        /// asking comes after `connect` returns, and a refusal may come first.
        private var ended: (any Error)?

        /// Succeeds once TLS's handshake is complete, with the server's certificate; fails with
        /// what ended the connection, or after `timeout` (a server that takes the connection and
        /// never finishes the handshake must not hold the shipper).
        func handshake(on loop: EventLoop, timeout: TimeAmount) -> EventLoopFuture<[UInt8]?> {
            loop.submit {
                if self.handshook { return loop.makeSucceededFuture(self.peer) }
                if let ended = self.ended { return loop.makeFailedFuture(ended) }
                let promise = loop.makePromise(of: [UInt8]?.self)
                self.handshakeDone = promise
                let timer = loop.scheduleTask(in: timeout) {
                    promise.fail(LifeboatError(.io, "no TLS handshake within \(timeout.nanoseconds / 1_000_000_000) s"))
                }
                promise.futureResult.whenComplete { _ in timer.cancel() }
                return promise.futureResult
            }.flatMap { $0 }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .handshakeCompleted = event as? TLSUserEvent {
                peer = (try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate?.toDERBytes()) ?? nil
                handshook = true
                handshakeDone?.succeed(peer)
                handshakeDone = nil
            }
            context.fireUserInboundEventTriggered(event)
        }

        /// Queued on the loop before the request's bytes are: its answer cannot come first. A
        /// connection already ended fails it with what ended it (the vault's TLS alert, say,
        /// rather than the write's "closed channel" that follows).
        func expect(_ promise: EventLoopPromise<WireFrame>, on loop: EventLoop) {
            loop.execute {
                if let ended = self.ended { promise.fail(ended) } else { self.waiting.append(promise) }
            }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !waiting.isEmpty else {
                // An answer to nothing asked: the two sides no longer agree which is which.
                errorCaught(context: context, error: LifeboatError(.corrupt, "the vault sent an answer to no request"))
                return
            }
            waiting.removeFirst().succeed(unwrapInboundIn(data))
        }

        private func failWaiting(_ error: any Error) {
            let failed = waiting
            waiting = []
            for promise in failed { promise.fail(error) }
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            failWaiting(error)
            if ended == nil { ended = error }
            handshakeDone?.fail(error)
            handshakeDone = nil
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            failWaiting(LifeboatError(.io, "the vault closed the connection"))
            let closed = LifeboatError(.io, "the vault closed the connection during the TLS handshake")
            if ended == nil { ended = closed }
            handshakeDone?.fail(closed)
            handshakeDone = nil
        }
    }
}
