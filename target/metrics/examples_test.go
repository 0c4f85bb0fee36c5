package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/blockport/blockport/target"
	"github.com/prometheus/client_golang/prometheus"
)

// recorder is a Registerer that keeps what is registered, so the test can
// ask every collector for its descriptions (a Registry only hands out
// metrics that have values).
type recorder struct{ collectors []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

type noSource struct{}

func (noSource) Status() target.Status { return target.Status{} }

// exportedNames returns every blockport_ metric name New registers.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{}
	if _, err := New(rec, noSource{}, "test"); err != nil {
		t.Fatal(err)
	}
	fqName := regexp.MustCompile(`fqName: "([a-z0-9_]+)"`)
	names := map[string]bool{}
	for _, c := range rec.collectors {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no fqName in %s", d)
			}
			names[m[1]] = true
		}
	}
	return names
}

// TestExamplesUseExportedMetrics: every blockport_ metric that the Grafana
// dashboard and the Prometheus alerts query is one the server exports
// (histogram series through _bucket, _sum and _count), so a renamed metric
// cannot leave an empty panel or an alert that never fires.
func TestExamplesUseExportedMetrics(t *testing.T) {
	names := exportedNames(t)
	if len(names) < 10 {
		t.Fatalf("only %d metric names found: %v", len(names), names)
	}
	used := regexp.MustCompile(`blockport_[a-z0-9_]+`)
	for _, file := range []string{"examples/grafana/blockport.json", "examples/prometheus/alerts.yml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", file))
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, name := range used.FindAllString(string(data), -1) {
			if names[name] {
				refs = append(refs, name)
				continue
			}
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if base == name || !names[base] {
				t.Errorf("%s queries %s, which the server does not export", file, name)
				continue
			}
			refs = append(refs, base)
		}
		if len(refs) == 0 {
			t.Errorf("%s uses no blockport_ metric", file)
		}
		// Every exported metric is shown or alerted on somewhere.
		if file == "examples/grafana/blockport.json" {
			for name := range names {
				if !slices.Contains(refs, name) {
					t.Errorf("the dashboard has no panel for %s", name)
				}
			}
		}
	}
}
