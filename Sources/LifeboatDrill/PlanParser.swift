import Foundation
import LifeboatCore
import SystemPackage
import Yams

/// Reads a YAML drill plan. Every error names the file, the line and the field, and is found
/// before anything is mounted:
///
/// ```yaml
/// point: latest-app          # optional selector (default: latest)
/// timeout: 30m               # optional, the whole drill
/// disks:
///   disk0:                   # a disk of the vault
///     filesystem: auto       # optional: auto | ext4 | xfs | none
///     checks:
///       - digest
///       - fsck: {timeout: 5m}
///       - files: {manifest: app.sha256}
///       - sqlite: {database: var/app.db}
///       - script: {run: ./check.sh, name: app-starts, timeout: 1m}
///       - boot: {expect: "LIFEBOAT-PROBE ok", fail-on: "FAILED", memory: 256M, timeout: 2m}
/// ```
public enum PlanParser {
    public static func load(path: String) throws -> DrillPlan {
        let data: Data
        do { data = Data(try readWholeFile(FilePath(path))) } catch {
            throw error == .isDirectory ? LifeboatError(.invalidArgument, "is a directory, not a plan file", path: path)
                                        : LifeboatError.system(error, "cannot read the plan file", path: path)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw LifeboatError(.invalidArgument, "the plan is not UTF-8 text", path: path)
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws -> DrillPlan {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch let e as YamlError {
            throw LifeboatError(.invalidArgument, "not valid YAML: \(yamlProblem(e))", path: path)
        }
        let p = Reader(path: path)
        guard let root else { throw p.error(nil, "the plan is empty: it needs at least `disks:`") }
        let top = try p.mapping(root, "the plan", known: ["version", "point", "timeout", "disks"])
        if let v = top["version"] {
            guard try p.int(v.value, "version") == 1 else { throw p.error(v.value, "field 'version': this lifeboat reads plan version 1") }
        }
        var plan = DrillPlan(path: path, point: try top["point"].map { try p.string($0.value, "point") },
                             timeout: try top["timeout"].map { try p.duration($0.value, "timeout") } ?? DrillPlan.defaultTimeout, disks: [])
        guard let disks = top["disks"] else { throw p.error(root, "missing field 'disks' (the disks to check, by name)") }
        guard case .mapping(let diskMap) = disks.value, !diskMap.isEmpty else {
            throw p.error(disks.value, "field 'disks' must map each disk name to its checks")
        }
        for (key, value) in diskMap {
            let name = try p.string(key, "disk name")
            plan.disks.append(try disk(name: name, value, line: key.mark?.line ?? 0, p))
        }
        return plan
    }

    private static func disk(name: String, _ node: Node, line: Int, _ p: Reader) throws -> DiskPlan {
        let fields = try p.mapping(node, "disk '\(name)'", known: ["filesystem", "checks"])
        var disk = DiskPlan(name: name, filesystem: .auto, checks: [], line: line)
        if let fs = fields["filesystem"] {
            let text = try p.string(fs.value, "disks.\(name).filesystem")
            guard let kind = FilesystemKind(rawValue: text) else {
                throw p.error(fs.value, "field 'disks.\(name).filesystem': unknown filesystem '\(text)' (use \(FilesystemKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            disk.filesystem = kind
        }
        guard let checks = fields["checks"] else { throw p.error(node, "disk '\(name)': missing field 'checks'") }
        guard case .sequence(let list) = checks.value else {
            throw p.error(checks.value, "field 'disks.\(name).checks' must be a list of checks")
        }
        guard !list.isEmpty else { throw p.error(checks.value, "field 'disks.\(name).checks' is empty: a disk needs at least one check") }
        var names = Set<String>()
        for item in list {
            let check = try self.check(item, disk: name, p)
            guard names.insert(check.name).inserted else {
                throw p.error(item, "disk '\(name)' has two checks named '\(check.name)': give one a `name`")
            }
            disk.checks.append(check)
        }
        if disk.filesystem == .none, let c = disk.checks.first(where: { $0.kind == .fsck || $0.kind == .files || $0.kind == .sqlite }) {
            throw LifeboatError(.invalidArgument, "line \(c.line): check '\(c.kind.rawValue)' needs a filesystem, but disk '\(name)' has `filesystem: none`", path: p.path)
        }
        return disk
    }

    /// A check is its kind alone (`- digest`) or the kind mapped to its options (`- fsck: {timeout: 5m}`).
    private static func check(_ node: Node, disk: String, _ p: Reader) throws -> CheckPlan {
        let kindNode: Node
        var options: [String: (key: Node, value: Node)] = [:]
        switch node {
        case .scalar:
            kindNode = node
        case .mapping(let m) where m.count == 1:
            kindNode = m.keys[0]
        default:
            throw p.error(node, "a check in 'disks.\(disk).checks' is a kind (\(CheckKind.allCases.map(\.rawValue).joined(separator: ", "))) or one kind mapped to its options")
        }
        let kindText = try p.string(kindNode, "check")
        guard let kind = CheckKind(rawValue: kindText) else {
            throw p.error(kindNode, "unknown check '\(kindText)' in 'disks.\(disk).checks' (known: \(CheckKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let field = "disks.\(disk).checks.\(kind.rawValue)"
        if case .mapping(let m) = node, let value = m.values.first, !(value.scalar.map { $0.string.isEmpty } ?? false) {
            let specific: [CheckKind: [String]] = [.files: ["manifest"], .sqlite: ["database"], .script: ["run"],
                                                   .boot: ["expect", "fail-on", "memory", "cpus", "accelerator", "firmware", "kernel", "initrd", "append"]]
            options = try p.mapping(value, "check '\(kind.rawValue)'", known: ["timeout", "name"] + (specific[kind] ?? []))
        }
        var check = CheckPlan(kind: kind, name: kind.rawValue, timeout: CheckPlan.defaultTimeout(kind), line: kindNode.mark?.line ?? 0)
        if let t = options["timeout"] { check.timeout = try p.duration(t.value, field + ".timeout") }
        if let n = options["name"] { check.name = try p.string(n.value, field + ".name") }
        func required(_ key: String) throws -> String {
            guard let v = options[key] else { throw p.error(node, "check '\(kind.rawValue)' of disk '\(disk)': missing field '\(key)'") }
            let text = try p.string(v.value, field + "." + key)
            guard !text.isEmpty else { throw p.error(v.value, "field '\(field).\(key)' is empty") }
            return text
        }
        switch kind {
        case .files: check.manifest = try required("manifest")
        case .sqlite: check.database = try required("database")
        case .script: check.run = try required("run")
        case .boot: check.boot = try boot(options, field: field, required: required, p)
        case .digest, .fsck: break
        }
        return check
    }

    private static func boot(_ options: [String: (key: Node, value: Node)], field: String,
                             required: (String) throws -> String, _ p: Reader) throws -> BootOptions {
        var boot = BootOptions(expect: try required("expect"))
        func text(_ key: String) throws -> String? {
            guard let v = options[key] else { return nil }
            let t = try p.string(v.value, field + "." + key)
            guard !t.isEmpty else { throw p.error(v.value, "field '\(field).\(key)' is empty") }
            return t
        }
        boot.failOn = try text("fail-on")
        if let v = options["memory"] {
            let t = try p.string(v.value, field + ".memory")
            guard let mib = parseMiB(t), (64...65536).contains(mib) else {
                throw p.error(v.value, "field '\(field).memory': '\(t)' is not a memory size from 64M to 64G (e.g. 256M, 1G)")
            }
            boot.memoryMiB = mib
        }
        if let v = options["cpus"] {
            let n = try p.int(v.value, field + ".cpus")
            guard (1...64).contains(n) else { throw p.error(v.value, "field '\(field).cpus': \(n) is not from 1 to 64") }
            boot.cpus = n
        }
        if let t = try text("accelerator") {
            guard let a = BootOptions.Accelerator(rawValue: t) else {
                throw p.error(options["accelerator"]!.value, "field '\(field).accelerator': unknown accelerator '\(t)' (use \(BootOptions.Accelerator.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            boot.accelerator = a
        }
        boot.firmware = try text("firmware")
        boot.kernel = try text("kernel")
        boot.initrd = try text("initrd")
        boot.append = try text("append")
        if boot.kernel == nil, let key = ["initrd", "append"].first(where: { options[$0] != nil }) {
            throw p.error(options[key]!.key, "field '\(field).\(key)' needs 'kernel' (direct kernel boot)")
        }
        return boot
    }

    /// `256M`, `1G`, `512` (MiB): a size in MiB.
    private static func parseMiB(_ text: String) -> Int? {
        let t = text.uppercased().replacingOccurrences(of: "IB", with: "").replacingOccurrences(of: "B", with: "")
        let factor = t.hasSuffix("G") ? 1024 : 1
        let number = t.hasSuffix("G") || t.hasSuffix("M") ? String(t.dropLast()) : t
        guard let n = Int(number), n > 0, n <= 1 << 20 else { return nil }
        return n * factor
    }

    private static func yamlProblem(_ e: YamlError) -> String {
        switch e {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            // YAML forbids tabs in indentation; libyaml's wording does not say so.
            let hint = problem.contains("cannot start any token") ? " (a tab? YAML indents with spaces only)" : ""
            return "line \(mark.line), column \(mark.column): \(problem)\(hint)"
        default:
            return "\(e)"
        }
    }

    /// Typed access to nodes, with errors that carry the node's line.
    struct Reader {
        let path: String

        func error(_ node: Node?, _ message: String) -> LifeboatError {
            let line = node?.mark.map { "line \($0.line): " } ?? ""
            return LifeboatError(.invalidArgument, line + message, path: path)
        }

        func mapping(_ node: Node, _ what: String, known: [String]) throws -> [String: (key: Node, value: Node)] {
            guard case .mapping(let m) = node else { throw error(node, "\(what) must be a mapping of fields (\(known.joined(separator: ", ")))") }
            var out: [String: (key: Node, value: Node)] = [:]
            for (k, v) in m {
                let name = try string(k, "field name")
                guard known.contains(name) else {
                    throw error(k, "unknown field '\(name)' in \(what) (known: \(known.joined(separator: ", ")))")
                }
                out[name] = (k, v)
            }
            return out
        }

        func string(_ node: Node, _ field: String) throws -> String {
            guard case .scalar(let s) = node else { throw error(node, "field '\(field)' must be text, not a \(shape(node))") }
            return s.string
        }

        /// A decimal whole number. Not Yams' `node.int`: it also reads YAML 1.1's base-60 form
        /// (`1:30`) and traps on overflow there (found by the drill-plan fuzz target with
        /// `version: 2222222222222222222:22`).
        func int(_ node: Node, _ field: String) throws -> Int {
            guard case .scalar(let scalar) = node, let n = Int(scalar.string) else {
                throw error(node, "field '\(field)' must be a whole number")
            }
            return n
        }

        func duration(_ node: Node, _ field: String) throws -> TimeInterval {
            let text = try string(node, field)
            do { return try parseDuration(text) } catch {
                throw self.error(node, "field '\(field)': '\(text)' is not a duration (a number with s, m, h or d, e.g. 90s)")
            }
        }

        private func shape(_ node: Node) -> String {
            switch node {
            case .mapping: "mapping"
            case .sequence: "list"
            default: "value"
            }
        }
    }
}
