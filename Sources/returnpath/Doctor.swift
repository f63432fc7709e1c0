import ArgumentParser
import Doctor
import Lab
import Namespace
import Netlink
import ReturnRouting

/// Where doctor looks (`TargetOptions`, apply's), and how its fix commands address that node. Doctor only reads.
struct DoctorTarget: ParsableArguments {
    @OptionGroup var target: TargetOptions
    var lab: String? { target.lab }
    var host: String { target.host }
    var netns: String? { target.netns }

    struct Resolved {
        var namespace: NetworkNamespace
        var topology: Topology?
        /// How fix commands address the node.
        var ip: [String]
        var sysctl: [String]
        var returnpath: [String]
    }

    func resolve() throws -> Resolved {
        let (namespace, topology) = try target.resolve()
        if let lab = target.lab {
            let name = Topology.namespaceName(lab: lab, host: target.host)
            return Resolved(namespace: namespace, topology: topology, ip: ["ip", "-n", name],
                            sysctl: ["ip", "netns", "exec", name, "sysctl", "-w"],
                            returnpath: ["--lab", lab] + (target.host == "node" ? [] : ["--host", target.host]))
        }
        if let netns = target.netns {
            return Resolved(namespace: namespace, topology: nil, ip: ["ip", "-n", netns],
                            sysctl: ["ip", "netns", "exec", netns, "sysctl", "-w"], returnpath: ["--netns", netns])
        }
        return Resolved(namespace: .current, topology: nil, ip: ["ip"], sysctl: ["sysctl", "-w"], returnpath: [])
    }
}

/// `returnpath doctor` runs the checks (`doctor check`, the default) or explains a packet (`doctor explain`).
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Explain a node's return paths and find what breaks them (doctor only reads).",
        subcommands: [DoctorCheck.self, DoctorExplain.self],
        defaultSubcommand: DoctorCheck.self)
}

/// `returnpath doctor [check]`: would each service's replies leave by the interface its requests come in on — and
/// what breaks it.
struct DoctorCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a node's return paths: for each service and interface it is announced on, where replies leave, decided by which rule and table; then what breaks them, each finding with the command that fixes it.",
        discussion: """
            Checked against -f POLICY, else (with --lab) the policy derived from the lab, else the record of the last \
            apply (and what the kernel has of it), else the global addresses on lo (interfaces unknown). Doctor only \
            reads: rules, routes, nftables, sysctls, the record. Exit: 0 when no finding is an error, 1 when one is, \
            2 for bad input.
            """)

    @Option(name: .shortAndLong, help: "Policy file (YAML).")
    var file: String?

    @OptionGroup var target: DoctorTarget

    @OptionGroup var nodeName: NodeOption

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    func run() throws {
        let resolved = try target.resolve()
        let node: NodeConnection
        do { node = try NodeConnection(resolved.namespace) } catch { throw fail(error.description, code: error.exitCode) }
        var policy: Policy?
        var source = DoctorRequest.PolicySource.addresses
        if let file {
            // Resolved for this node first, as apply does (spec.nodes, network:, gateway: auto).
            let document = try PolicyLoading.document(file)
            let router: ReturnRouter
            do { router = try ReturnRouter(handle: node.handle) } catch { throw fail(error.description, code: error.exitCode) }
            // A policy that names everything (no spec.nodes, network: or auto) is checked as written: an interface
            // it names that the node lacks is a finding, not a refusal.
            policy = document.needsNode ? try PolicyLoading.policy(document, node: nodeName, target: target.target, router: router)
                                        : PolicyResolver.fixed(document)
            source = .file(file)
        } else if let topology = resolved.topology, let lab = target.lab {
            policy = Policy.derived(from: topology, host: target.host)
            if policy != nil { source = .lab(lab) }
        }
        let state: NodeState
        do { state = try node.read() } catch { throw fail(error.description, code: error.exitCode) }
        if policy == nil, let record = state.record, !record.slots.isEmpty { source = .record }
        var ports: [IPAddress: UInt16] = [:]
        for service in resolved.topology?.host(target.host)?.services ?? [] where ports[service.address] == nil {
            ports[service.address] = service.port
        }
        let request = DoctorRequest(policy: policy, source: source, ip: resolved.ip, sysctl: resolved.sysctl,
                                    returnpathTarget: resolved.returnpath, isHostNamespace: resolved.namespace.name == nil,
                                    servicePorts: ports)
        let report: DoctorReport
        do { report = try Doctor(state: state, request: request).run(kernel: node.kernel) } catch { throw fail(error.description, code: error.exitCode) }
        if json {
            do { print(try DoctorOutput(report).json()) } catch { throw fail(error.description, code: 1) }
        } else {
            print(DoctorText.render(report))
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}
