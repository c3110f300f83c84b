import Foundation

/// A metrics file read with the Prometheus project's own Python parser (Debian's
/// python3-prometheus-client, installed by scripts/install-deps): a file it rejects fails the test.
struct PrometheusText {
    struct Sample: Decodable {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    let samples: [Sample]

    static let python = "/usr/bin/python3"

    static func parse(_ path: String) throws -> PrometheusText {
        let program = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = []
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                for s in family.samples:
                    out.append({"name": s.name, "labels": s.labels, "value": s.value})
            print(json.dumps(out))
            """
        let r = try runTool(python, ["-c", program, path])
        guard r.status == 0 else {
            throw HarnessError(description: "the Prometheus parser rejected \(path): \(r.err)")
        }
        return PrometheusText(samples: try JSONDecoder().decode([Sample].self, from: Data(r.out.utf8)))
    }

    func value(_ name: String, _ labels: [String: String]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}
