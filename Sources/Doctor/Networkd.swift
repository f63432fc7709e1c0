import FoundationEssentials
import TextFormat
import YAMLFile

/// systemd-networkd on the host: whether it runs, and whether it deletes routing rules it did not create
/// (`ManageForeignRoutingPolicyRules=`, default yes, systemd ≥ 248; systemd #19106). It manages only the machine's
/// own namespace. `root` is the filesystem root (tests give a directory of their own).
public struct NetworkdStatus: Sendable, Hashable {
    public var running: Bool
    /// The effective ManageForeignRoutingPolicyRules (true unless a drop-in says no).
    public var managesForeignRules: Bool
    /// The file that set it last, if any.
    public var setBy: String?

    /// Throws when a configuration file that exists cannot be read: its setting would be unknown.
    public static func read(root: String = "/") throws(DoctorError) -> NetworkdStatus {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        let files = FileManager.default
        let running = files.fileExists(atPath: base + "/run/systemd/netif/state") || processRunning(base)
        var manages = true
        var setBy: String?
        // networkd.conf, then the drop-ins of every directory in lexical order of their names (later wins).
        var paths = [base + "/etc/systemd/networkd.conf"]
        var dropIns: [String: String] = [:]
        for directory in ["/usr/lib/systemd/networkd.conf.d", "/usr/local/lib/systemd/networkd.conf.d",
                          "/run/systemd/networkd.conf.d", "/etc/systemd/networkd.conf.d"] {
            let path = base + directory
            // A directory that is absent (the usual case) or cannot be opened holds no drop-in for networkd either:
            // systemd skips such directories when it collects drop-ins (conf-files.c, "ignoring").
            for name in (try? files.contentsOfDirectory(atPath: path)) ?? [] where name.hasSuffix(".conf") {
                dropIns[name] = path + "/" + name   // /etc overrides a drop-in of the same name elsewhere
            }
        }
        paths += dropIns.keys.sorted().compactMap { dropIns[$0] }
        for file in paths where files.fileExists(atPath: file) {
            let text: String
            do throws(FileError) { text = try YAMLReader.read(file) } catch {   // bounded, UTF-8, the kernel's errno
                // Gone since the listing: nothing to read, as for networkd.
                guard files.fileExists(atPath: file) else { continue }
                throw .file(path: file, message: error.message)
            }
            if let value = setting(text, section: "Network", key: "ManageForeignRoutingPolicyRules") {
                manages = !["no", "false", "0", "off"].contains(value.lowercased())
                setBy = file.hasPrefix(base) ? String(file.dropFirst(base.count)) : file
            }
        }
        return NetworkdStatus(running: running, managesForeignRules: manages, setBy: setBy)
    }

    /// The last value of KEY in [SECTION] of an INI-style systemd file.
    static func setting(_ text: String, section: String, key: String) -> String? {
        var current = ""
        var value: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmed()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") { current = String(line.dropFirst().dropLast()); continue }
            guard current == section, let eq = line.firstIndex(of: "=") else { continue }
            if line[..<eq].trimmed() == key {
                value = line[line.index(after: eq)...].trimmed()
            }
        }
        return value
    }

    /// A process whose name is systemd-networkd (comm is cut to 15 characters: "systemd-network").
    static func processRunning(_ base: String) -> Bool {
        guard base.isEmpty || base == "/" else { return false }
        // Without /proc (not mounted) no process can be seen: the state file networkd writes is the other sign.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(entry) != nil {
            // A process that exited since the listing has no comm left to read: it is not a running networkd.
            if let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
               comm.trimmed() == "systemd-network" {
                return true
            }
        }
        return false
    }
}
