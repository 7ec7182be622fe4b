import NBDMetrics
import Testing

/// `nvme-nbd top`'s arithmetic: totals read from a scrape, rates between two.
@Suite struct TopRowTests {
    private func scrape(requests: Int, bytes: Int, mmio: Int, irq: Int, io: Int, fast: Int, slow: Int) throws
        -> [String: ExportTotals]
    {
        let text = """
            nvme_nbd_requests_total{export="a",type="read"} \(requests - 1)
            nvme_nbd_requests_total{export="a",type="flush"} 1
            nvme_nbd_read_bytes_total{export="a"} \(bytes)
            nvme_nbd_written_bytes_total{export="a"} 0
            nvme_nbd_mmio_doorbell_writes_total{export="a",doorbell="sq_tail"} \(mmio)
            nvme_nbd_mmio_doorbell_writes_total{export="a",doorbell="cq_head"} 0
            nvme_nbd_interrupts_total{export="a"} \(irq)
            nvme_nbd_nvme_io_commands_total{export="a"} \(io)
            nvme_nbd_shadow_doorbells_enabled{export="a"} 1
            nvme_nbd_request_duration_seconds_bucket{export="a",type="read",le="0.00001"} 0
            nvme_nbd_request_duration_seconds_bucket{export="a",type="read",le="0.0001"} \(fast)
            nvme_nbd_request_duration_seconds_bucket{export="a",type="read",le="+Inf"} \(fast + slow)
            nvme_nbd_request_duration_seconds_bucket{export="a",type="flush",le="0.00001"} 0
            nvme_nbd_request_duration_seconds_bucket{export="a",type="flush",le="0.0001"} 0
            nvme_nbd_request_duration_seconds_bucket{export="a",type="flush",le="+Inf"} 0
            other_series{export="b"} 5
            unlabelled 1

            """
        return ExportTotals.byExport(try PrometheusText.parse(text))
    }

    @Test func ratesBetweenTwoScrapes() throws {
        let t0 = try scrape(requests: 100, bytes: 0, mmio: 10, irq: 50, io: 100, fast: 0, slow: 0)
        let t1 = try scrape(requests: 2100, bytes: 8 << 20, mmio: 30, irq: 550, io: 2100, fast: 2000, slow: 0)
        #expect(t1["a"]?.requests == 2100)
        #expect(t1["a"]?.latency.count == 3)
        let row = TopRow(export: "a", from: t0["a"]!, to: t1["a"]!, seconds: 2)
        #expect(row.iops == 1000)
        #expect(row.mibPerSecond == 4)
        #expect(row.mmioPerIO == 0.01)
        #expect(row.interruptsPerIO == 0.25)
        #expect(row.shadowDoorbells == true)
        // 2000 answered, all in (10 µs, 100 µs]: p50 half way, p99 near the top.
        #expect(abs(row.p50! - 0.000055) < 1e-12)
        #expect(abs(row.p99! - 0.0000991) < 1e-12)
        #expect(row.line.hasPrefix("a "))
        #expect(
            row.line.contains(" 1000 ") && row.line.contains(" 4.0 ") && row.line.contains(" 55 ")
                && row.line.contains(" 99 "))
        #expect(row.line.contains("0.010") && row.line.contains("0.250") && row.line.hasSuffix("on"))
    }

    @Test func idleIntervalShowsDashes() throws {
        let t = try scrape(requests: 5, bytes: 0, mmio: 1, irq: 1, io: 5, fast: 5, slow: 0)
        let row = TopRow(export: "", from: t["a"]!, to: t["a"]!, seconds: 1)
        #expect(row.iops == 0 && row.p50 == nil && row.mmioPerIO == nil)
        #expect(row.line.hasPrefix("\"\" "))
        #expect(row.line.split(separator: " ").filter { $0 == "-" }.count == 4)
    }
}
