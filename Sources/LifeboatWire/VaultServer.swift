import Foundation
import LifeboatCore
import LifeboatIdentity
import LifeboatVault
import LifeboatWireFormat
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import SystemPackage
import X509

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat vault serve`: the vault on the network (decision 0010). Mutual TLS 1.3 only: a
/// client must present a certificate of the vault's own CA that names an enrolled site (its
/// certificate on record in `VAULT/tls/sites`), else the connection is refused and logged. A
/// site reaches only its own group (`VAULT/sites/NAME/`, `VaultHome`). Each request runs on a
/// thread pool (the vault's calls block on files and SQLite): one connection's requests in
/// order, different sites' in parallel. Each group's upkeep (`VaultMaintenance`) runs inside the
/// service.
public final class VaultServer: @unchecked Sendable {
    private let home: VaultHome
    private let authority: VaultAuthority
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let pool: NIOThreadPool
    private let service: VaultService
    private var channel: Channel?

    public init(home: VaultHome, logger: Logger) throws {
        try home.checkServable()
        self.home = home
        self.logger = logger
        authority = try VaultAuthority.open(vault: home.root, create: true)
        // A loop per core: each connection's TLS and framing run on its own loop, so two sites'
        // streams are decrypted in parallel (one loop was the bound of the two-site ingest).
        group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        pool = NIOThreadPool(numberOfThreads: max(2, System.coreCount))
        service = VaultService(home: home, authority: authority, logger: logger)
    }

    /// Listens on `host:port` (port 0: any; `boundPort` says which).
    public func start(host: String, port: Int) throws {
        let (certificatePEM, keyPEM) = try authority.serverIdentity()
        var tls = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(certificatePEM.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)),
            trustRoots: .certificates([try NIOSSLCertificate(bytes: Array(try authority.certificate.serializeAsPEM().pemString.utf8), format: .pem)]))
        tls.minimumTLSVersion = .tlsv13
        let context = try NIOSSLContext(configuration: tls)
        pool.start()
        try service.startUpkeep()
        let service = self.service, pool = self.pool, logger = self.logger
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WireFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(VaultConnectionHandler(service: service, pool: pool, logger: logger))
                }
            }
        do { channel = try bootstrap.bind(host: host, port: port).wait() } catch {
            throw LifeboatError(.io, "cannot listen on \(host):\(port): \(error)")
        }
        logger.notice("vault \(home.root) serving on \(host):\(boundPort ?? port) (mutual TLS 1.3; sites of this vault's CA only)")
    }

    public var boundPort: Int? { channel?.localAddress?.port }

    /// Stops taking connections, lets requests in flight finish (the pool first: their answers
    /// are written by the event loop, which must still run), then the connections, then the upkeep.
    public func stop() {
        try? channel?.close().wait()
        try? pool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
        service.stopUpkeep()
    }
}

/// What a request does to the vault, for an identified site: always to that site's own group.
final class VaultService: @unchecked Sendable {
    let home: VaultHome
    let authority: VaultAuthority
    let logger: Logger
    /// Each site's group and its upkeep, opened at the site's first request.
    private let groups = Mutex<[String: (vault: Vault, maintenance: VaultMaintenance)]>([:])
    private var upkeepStarted = false
    /// The readers of the point each site's re-protect or failback reads (`readPoint`, a MiB at a
    /// time): opened once per point, not per request.
    private let pointReaders = Mutex<[String: (lsn: LSN, pool: PointReaderPool)]>([:])

    init(home: VaultHome, authority: VaultAuthority, logger: Logger) {
        self.home = home
        self.authority = authority
        self.logger = logger
    }

    /// Starts the upkeep of every group already in the vault (a group made later starts its own).
    func startUpkeep() throws {
        for name in try home.siteNames() { _ = try group(of: name) }
        try groups.withLock { groups in
            upkeepStarted = true
            for g in groups.values { try g.maintenance.start() }
        }
    }

    func stopUpkeep() {
        for (_, g) in groups.withLock({ $0 }) { g.maintenance.stop() }
    }

    /// The site's group, made at its first request.
    private func group(of site: String) throws -> (vault: Vault, maintenance: VaultMaintenance) {
        try groups.withLock { groups in
            if let g = groups[site] { return g }
            let vault = try home.siteGroup(site, create: true)
            try home.checkServedAtRest(vault, site: site)
            vault.removeStaleIncoming()  // this service is the group's only writer
            var siteLogger = logger
            siteLogger[metadataKey: "site"] = "\(site)"
            let g = (vault, VaultMaintenance(root: vault.root, key: home.key, logger: siteLogger))
            if upkeepStarted { try g.1.start() }
            groups[site] = g
            return g
        }
    }

    /// The site a verified peer certificate names, if it is enrolled; else why not.
    func identify(_ peer: NIOSSLCertificate?) -> Result<String, LifeboatError> {
        guard let peer, let der = try? peer.toDERBytes(), let certificate = try? Certificate(derEncoded: der) else {
            return .failure(LifeboatError(.permission, "no client certificate"))
        }
        guard let site = SiteBundle.siteNamed(by: certificate), (try? SiteBundle.validateSiteName(site)) != nil else {
            return .failure(LifeboatError(.permission, "the client certificate names no site"))
        }
        guard let pem = try? certificate.serializeAsPEM().pemString, authority.isEnrolled(site: site, certificatePEM: pem) else {
            return .failure(LifeboatError(.permission, "site '\(site)' is not enrolled here, or its certificate was revoked"))
        }
        return .success(site)
    }

    private func partPath(_ vault: Vault, _ group: String, _ disk: UInt32) -> FilePath {
        vault.root.appending("incoming").appending("remote-\(group)-\(disk).part")
    }

    /// The answer to one request, and the answer's body (`points`: its listing as JSON).
    func handle(_ request: WireRequest, body: [UInt8], site: String) throws -> (WireResponse, [UInt8]) {
        let (vault, maintenance) = try group(of: site)
        var r = WireResponse(ok: true)
        var answer: [UInt8] = []
        let writer = WriterClaim(generation: request.generation ?? 1, owner: request.owner ?? "")
        if ["addDiskBegin", "addDiskChunk", "addDiskEnd"].contains(request.op), let why = try vault.fencedReason(for: writer) {
            throw LifeboatError(.fenced, why)
        }
        switch request.op {
        case "state":
            let state = try vault.state(of: writer)
            switch state.standing {
            case .owner: break
            case .drainAsked: r.drainAsked = true
            case .fenced(let why): r.fenced = why
            }
            r.site = site
            r.group = state.groupID
            r.disks = state.diskIDs.map(\.rawValue).sorted()
            r.heldThrough = state.heldThrough.rawValue
            r.maintenanceError = maintenance.lastError
        case "addDiskBegin":
            let (group, disk, size) = try (required(request.group, "group"), required(request.disk, "disk"), required(request.sizeBytes, "sizeBytes"))
            try checkGroup(group, vault)
            let fd = try FileDescriptor.open(partPath(vault, group, disk), .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: [.ownerReadWrite])
            try fd.closeAfter { try fd.resize(to: size) }
        case "addDiskChunk":
            let (group, disk, offset) = try (required(request.group, "group"), required(request.disk, "disk"), required(request.offset, "offset"))
            try checkGroup(group, vault)
            guard offset >= 0 else { throw LifeboatError(.invalidArgument, "field 'offset': \(offset) is negative") }
            let raw = try body.withUnsafeBytes { try Zstd.decompress($0, maxSize: WireFrame.maxBytes) }
            let fd = try FileDescriptor.open(partPath(vault, group, disk), .writeOnly, options: [.closeOnExec])
            try fd.closeAfter { _ = try fd.writeAll(toAbsoluteOffset: offset, raw) }
        case "addDiskEnd":
            let (group, disk, name, size) = try (required(request.group, "group"), required(request.disk, "disk"), required(request.name, "name"),
                                                 required(request.sizeBytes, "sizeBytes"))
            try checkGroup(group, vault)
            let part = partPath(vault, group, disk)
            defer { unlink(part.string) }
            try vault.addDisk(group: group, id: DiskID(disk), name: name, sizeBytes: size, initialContent: part)
            logger.notice("site \(site): disk \(name) (\(size) bytes) replicated")
        case "ship":
            let outcome = try vault.ingest(compressedSegment: body, name: "\(site):\(request.name ?? "segment")", as: writer)
            if case .ingested = outcome { maintenance.dataArrived() }
            r.heldThrough = try vault.heldThrough(for: writer).rawValue
        case "append":
            let first = LSN(try required(request.lsn, "lsn"))
            let outcome = try vault.ingest(compressedRecords: body, firstLSN: first, name: "\(site):\(request.name ?? "stream")", as: writer)
            if case .ingested = outcome { maintenance.dataArrived() }
            r.heldThrough = try vault.heldThrough(for: writer).rawValue
        case "openResync":
            let resume = LSN(try required(request.lsn, "lsn"))
            let before = try vault.lsnRange().last
            r.heldThrough = try vault.openResync(resumingAt: resume, as: writer).rawValue
            if before.next < resume {
                logger.warning("site \(site): the site dropped LSNs \(before.next)…\(resume.rawValue - 1) past its spool limit; no point until its resync ends")
            }
        case "drained":
            let lsn = LSN(try required(request.lsn, "lsn"))
            _ = try vault.reportDrained(at: lsn, as: writer)
            logger.notice("site \(site): drained for a planned failover, final point at LSN \(lsn)")
        case "history":
            answer = WireJSON.encode(try vault.generation())
        case "writtenBlocks":
            answer = WireJSON.encode(BlockExtents.byDecimalID(try vault.writtenBlocks(after: LSN(try required(request.after, "after")), through: LSN(try required(request.lsn, "lsn")))))
        case "forsakenBlocks":
            answer = WireJSON.encode(BlockExtents.byDecimalID(try vault.forsakenBlocks(generation: try required(request.ofGeneration, "ofGeneration"))))
        case "readPoint":
            let (lsn, disk, offset, length) = try (required(request.lsn, "lsn"), required(request.disk, "disk"), required(request.offset, "offset"),
                                                   required(request.sizeBytes, "sizeBytes"))
            guard offset >= 0, offset & 4095 == 0, length > 0, length <= 4 << 20, length & 4095 == 0 else {
                throw LifeboatError(.invalidArgument, "readPoint: offset \(offset) and length \(length) must be whole 4 KiB blocks, at most 4 MiB")
            }
            let pool = try pointReaders.withLock { readers in
                if let open = readers[site], open.lsn == LSN(lsn) { return open.pool }
                let pool = try PointReaderPool(vault: vault, lsn: LSN(lsn))
                readers[site] = (LSN(lsn), pool)
                return pool
            }
            var data = [UInt8](repeating: 0, count: Int(length))
            try data.withUnsafeMutableBytes { buffer in try pool.with { try $0.read(disk: DiskID(disk), at: offset, into: buffer) } }
            answer = try data.withUnsafeBytes { try Zstd.compress($0, level: 1) }
        case "planFailover":
            answer = WireJSON.encode(try vault.planFailover())
            logger.notice("site \(site): a planned failover (failback) is asked: the current owner drains")
        case "withdrawPlan":
            answer = WireJSON.encode(try vault.withdrawPlannedFailover())
        case "takeOver":
            let lsn = LSN(try required(request.lsn, "lsn"))
            let point = try vault.points().last { $0.lsn == lsn }
            let outcome = try vault.fork(at: lsn, pointID: point?.id, owner: try required(request.newOwner, "newOwner"),
                                         ownerName: "site \(site): " + (request.note ?? "its host"), planned: true)
            answer = WireJSON.encode(outcome.generation)
            logger.notice("site \(site): failed back — generation \(outcome.generation.number) from LSN \(lsn)")
        case "pointAt":
            let lsn = try required(request.lsn, "lsn")
            r.pointID = try vault.points().last { $0.lsn == LSN(lsn) }?.id
        case "annotate":
            try vault.annotate(point: try required(request.point, "point"), note: try required(request.note, "note"))
        case "points":
            answer = WireJSON.encode(try PointListing(vault))
        default:
            throw LifeboatError(.invalidArgument, "unknown op '\(request.op)' (known: state, addDiskBegin, addDiskChunk, addDiskEnd, ship, append, openResync, drained, history, writtenBlocks, forsakenBlocks, readPoint, planFailover, withdrawPlan, takeOver, pointAt, annotate, points)")
        }
        return (r, answer)
    }

    /// The site's group is the one it first shipped (a site re-made with the same name is another
    /// group: refused). The id also names files here: 32 lowercase hex digits and nothing else.
    private func checkGroup(_ group: String, _ vault: Vault) throws {
        guard group.count == 32, group.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) else {
            throw LifeboatError(.invalidArgument, "field 'group': '\(group.prefix(40))' is not a protection group id (32 hex digits)")
        }
        if let held = try vault.groupID(), held != group {
            throw Vault.belongsToAnotherGroup(held, not: group, root: vault.root)
        }
    }

    private func required<T>(_ value: T?, _ field: String) throws -> T {
        guard let value else { throw LifeboatError(.invalidArgument, "field '\(field)' is missing") }
        return value
    }
}

/// One connection: identify the site at each request, then answer its requests one after
/// another, in order. A site may send the next request before the answer to the one before (the
/// shipper's next segment while this one is ingested): it waits here, already off the wire. At
/// most `waitingAtMost` wait; past that the connection is not read until one is answered (TCP's
/// own flow control holds the site). A refused request ends the connection: what the site sent
/// after it assumed it would succeed.
final class VaultConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WireFrame
    typealias OutboundOut = ByteBuffer

    private let service: VaultService
    private let pool: NIOThreadPool
    private let logger: Logger
    private var site: String?
    /// Requests read and not yet begun, oldest first; and whether one is being answered.
    private var waiting: [(request: WireRequest, body: [UInt8])] = []
    private var answering = false
    /// Requests waiting past which the connection is not read: the shipper has at most two
    /// segments in flight, and the control socket's `pointAt` may come between.
    static let waitingAtMost = 2
    /// A refusal was sent: what comes after it is not run.
    private var ending = false
    /// The connection is not read while `waitingAtMost` requests wait.
    private var readPaused = false

    init(service: VaultService, pool: NIOThreadPool, logger: Logger) {
        self.service = service
        self.pool = pool
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !ending else { return }  // refused: frames still arriving before the close are dropped
        let frame = unwrapInboundIn(data)
        let peer = context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        // Every request, not only the first: a certificate taken off the record (revoked) stops
        // an open connection at its next request.
        let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
        switch service.identify(handler?.peerCertificate) {
        case .success(let name):
            if site == nil { logger.info("site \(name) connected from \(peer)") }
            site = name
        case .failure(let why):
            logger.warning("refused a connection from \(peer): \(why.message)")
            refuseAndEnd(context, why)
            return
        }
        let request: WireRequest
        do { request = try WireJSON.decode(WireRequest.self, frame.header) } catch {
            refuseAndEnd(context, error as? LifeboatError ?? LifeboatError(.corrupt, "\(error)"))
            return
        }
        waiting.append((request, frame.body))
        if waiting.count >= Self.waitingAtMost, !readPaused {
            readPaused = true
            try? context.channel.syncOptions?.setOption(.autoRead, value: false)
        }
        answerNext(context)
    }

    /// Begins the oldest waiting request on the pool, unless one is being answered; its answer
    /// begins the next.
    private func answerNext(_ context: ChannelHandlerContext) {
        guard !answering, !ending, !waiting.isEmpty, let site else { return }
        let (request, body) = waiting.removeFirst()
        if waiting.count < Self.waitingAtMost, readPaused {
            readPaused = false
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)  // reads again at once
        }
        answering = true
        let service = self.service, logger = self.logger
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pool.runIfActive(eventLoop: context.eventLoop) { () -> (WireResponse, [UInt8]) in
            do { return try service.handle(request, body: body, site: site) } catch {
                let e = error as? LifeboatError ?? LifeboatError(.io, "\(error)")
                logger.warning("site \(site): \(request.op) refused: \(e)")
                return (WireResponse.refusal(e), [])
            }
        }.whenComplete { result in
            let (handler, context) = loopBound.value
            handler.answering = false
            switch result {
            case .success(let (response, body)) where response.ok:
                handler.reply(context, response, body: body)
                handler.answerNext(context)
            case .success(let (response, _)):
                handler.refuseAndEnd(context, response)
            case .failure(let error):
                handler.refuseAndEnd(context, WireResponse.refusal(LifeboatError(.io, "\(error)")))
            }
        }
    }

    private func refuseAndEnd(_ context: ChannelHandlerContext, _ error: LifeboatError) {
        refuseAndEnd(context, WireResponse.refusal(error))
    }

    /// Sends the refusal, then one for each request waiting behind it (not run), and closes.
    private func refuseAndEnd(_ context: ChannelHandlerContext, _ refusal: WireResponse) {
        ending = true
        reply(context, refusal)
        for (request, _) in waiting {
            reply(context, WireResponse.refusal(LifeboatError(.invalidArgument, "\(request.op) not run: a request before it on this connection was refused")))
        }
        waiting = []
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let peer = context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        logger.warning("refused a connection from \(peer): \(Self.describe(error))")
        context.close(promise: nil)
    }

    /// BoringSSL's reasons in words: what an operator reading the log needs to know.
    static func describe(_ error: Error) -> String {
        let text = "\(error)"
        let reasons: [(String, String)] = [
            ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "no client certificate (a site connects with its bundle)"),
            ("HTTP_REQUEST", "not TLS: a plain TCP or HTTP client"),
            ("WRONG_VERSION_NUMBER", "not TLS: a plain TCP client"),
            ("CERTIFICATE_VERIFY_FAILED", "a client certificate this vault's CA did not issue, or an expired one"),
            ("TLSV1_ALERT_UNKNOWN_CA", "the client does not trust this vault's CA: a bundle from another vault"),
            ("UNSUPPORTED_PROTOCOL", "TLS older than 1.3"),
            ("DECRYPTION_FAILED", "a tampered or replayed TLS stream"),
            ("BAD_RECORD_MAC", "a tampered or replayed TLS stream"),
        ]
        if let (_, words) = reasons.first(where: { text.contains($0.0) }) { return words }
        if error is LifeboatError { return "\(error)" }
        return "TLS or connection error: \(text)"
    }

    private func reply(_ context: ChannelHandlerContext, _ response: WireResponse, body: [UInt8] = []) {
        let bytes = WireFrame(header: WireJSON.encode(response), body: body).encoded()
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }
}

extension WireResponse {
    /// The answer that refuses a request, with the error's words and code.
    static func refusal(_ e: LifeboatError) -> WireResponse {
        var r = WireResponse(ok: false)
        r.error = e.description
        r.code = "\(e.code)"
        return r
    }
}
