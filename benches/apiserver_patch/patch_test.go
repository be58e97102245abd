// Package apiserverpatch measures what the API server spends applying a
// webhook's JSON patch to the training pod, for each form the same
// injection can take. The library and version are kube-apiserver v1.34.4's
// (gopkg.in/evanphx/json-patch.v4 v4.12.0). Run by `make bench`, or:
//
//	cd benches/apiserver_patch && go test -bench . -run XXX
package apiserverpatch

import (
	"encoding/json"
	"os"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// The pod as the API server encodes it (defaults filled in), and patches of
// several forms that all give the same result.
func load(t testing.TB) ([]byte, map[string][]byte) {
	pod := map[string]any{}
	raw, _ := os.ReadFile("../data/training-pod.json")
	json.Unmarshal(raw, &pod)
	spec := pod["spec"].(map[string]any)
	for _, c := range spec["containers"].([]any) {
		m := c.(map[string]any)
		m["resources"] = map[string]any{}
		m["terminationMessagePath"] = "/dev/termination-log"
		m["terminationMessagePolicy"] = "File"
		m["imagePullPolicy"] = "IfNotPresent"
	}
	spec["restartPolicy"] = "Always"
	spec["terminationGracePeriodSeconds"] = 30
	spec["dnsPolicy"] = "ClusterFirst"
	spec["securityContext"] = map[string]any{}
	spec["schedulerName"] = "default-scheduler"
	spec["enableServiceLinks"] = true
	spec["preemptionPolicy"] = "PreemptLowerPriority"
	spec["priority"] = 0
	spec["tolerations"] = []any{
		map[string]any{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
		map[string]any{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
	}
	pod["status"] = map[string]any{"phase": "Pending", "qosClass": "BestEffort"}
	doc, _ := json.Marshal(pod)
	current, _ := os.ReadFile("../data/training-pod.ops-patch.json")
	p, err := jsonpatch.DecodePatch(current)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(doc)
	if err != nil {
		t.Fatal(err)
	}
	var after map[string]any
	json.Unmarshal(patched, &after)
	aspec := after["spec"].(map[string]any)
	forms := map[string][]byte{"A: 15 adds (credgate until ee06aa1)": current}
	var b []map[string]any
	for i, c := range aspec["containers"].([]any) {
		b = append(b, map[string]any{"op": "replace", "path": "/spec/containers/" + string(rune('0'+i)), "value": c})
	}
	b = append(b, map[string]any{"op": "add", "path": "/spec/volumes", "value": aspec["volumes"]})
	b = append(b, map[string]any{"op": "add", "path": "/spec/imagePullSecrets", "value": aspec["imagePullSecrets"]})
	forms["B: a replace per container"], _ = json.Marshal(b)
	c := []map[string]any{
		{"op": "replace", "path": "/spec/containers", "value": aspec["containers"]},
		{"op": "add", "path": "/spec/volumes", "value": aspec["volumes"]},
		{"op": "add", "path": "/spec/imagePullSecrets", "value": aspec["imagePullSecrets"]},
	}
	forms["C: replace the containers list"], _ = json.Marshal(c)
	d := []map[string]any{{"op": "replace", "path": "/spec", "value": aspec}}
	forms["D: replace the spec (credgate now)"], _ = json.Marshal(d)
	for name, f := range forms {
		p, err := jsonpatch.DecodePatch(f)
		if err != nil {
			t.Fatal(name, err)
		}
		out, err := p.Apply(doc)
		if err != nil {
			t.Fatal(name, err)
		}
		var got map[string]any
		json.Unmarshal(out, &got)
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(after)
		if string(g) != string(w) {
			t.Fatal(name, "differs")
		}
	}
	return doc, forms
}

func BenchmarkForms(b *testing.B) {
	doc, forms := load(b)
	b.Logf("pod %d bytes", len(doc))
	for name, f := range forms {
		b.Run(name, func(b *testing.B) {
			b.ReportMetric(float64(len(f)), "patch-bytes")
			for i := 0; i < b.N; i++ {
				p, _ := jsonpatch.DecodePatch(f)
				if _, err := p.Apply(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
