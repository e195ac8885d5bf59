package engine

import "github.com/prometheus/client_golang/prometheus"

// The engine's metrics; a process registers Collectors() once.
var (
	leading = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kiln_engine_leader", Help: "1 while this kiln-node's engine leads the cluster's scheduling."})
	plans = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kiln_engine_plan_seconds", Help: "Time to compute a plan and the difference, by kind (full: schedule.Place over the cluster; incremental: the units a change concerns).",
		Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10)}, []string{"kind"})
	writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kiln_engine_writes_total", Help: "Keys the engine wrote, by kind (schedule, unschedule, update, unplaced)."}, []string{"kind"})
	conflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kiln_engine_compare_failures_total", Help: "Transactions whose compare-and-swap failed (the engine read the cluster again)."})
	unplacedUnits = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kiln_engine_unplaced_units", Help: "Units that want a machine and fit on none."})
)

// Collectors are the engine's metrics.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{leading, plans, writes, conflicts, unplacedUnits}
}
