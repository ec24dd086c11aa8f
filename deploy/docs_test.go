package deploy

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// webhookFields are the JSON names of the fields of a mutating or a validating webhook.
func webhookFields() []string {
	var out []string
	for _, typ := range []reflect.Type{reflect.TypeFor[admissionregistrationv1.MutatingWebhook](), reflect.TypeFor[admissionregistrationv1.ValidatingWebhook]()} {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// docWebhooks returns the rendered webhooks as JSON-like maps, by name.
func docWebhooks(t *testing.T, r rendered) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	add := func(name string, w any) {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(w)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = normalJSON(t, u).(map[string]any)
	}
	for _, w := range one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r).Webhooks {
		add(w.Name, &w)
	}
	for _, w := range one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, r).Webhooks {
		add(w.Name, &w)
	}
	return out
}

// normalJSON round-trips v through JSON, so that numbers compare equal whatever decoded them.
func normalJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// lookup returns the value at a dotted path such as clientConfig.service, and whether it is set
// (an empty list or map counts as not set, as the apiserver treats it).
func lookup(w map[string]any, path string) (any, bool) {
	var v any = w
	for _, key := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[key]; !ok || v == nil {
			return nil, false
		}
	}
	switch x := v.(type) {
	case []any:
		return v, len(x) > 0
	case map[string]any:
		return v, len(x) > 0
	}
	return v, true
}

// section returns the part of a Markdown document under the heading, up to the next heading of
// the same level.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("no section %q", heading)
	}
	rest := doc[i+len(heading)+2:]
	level := heading[:strings.IndexByte(heading, ' ')+1]
	if j := strings.Index(rest, "\n"+level); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// TestDocsAgreeWithWebhookConfigurations reads what docs/webhook.md states about the webhook
// configurations — its table of every field, and each `field: value` it writes anywhere — and
// what docs/operations.md's "What gets installed" states, and compares it with the rendered
// install, in the base and every overlay. The table must also cover every field the install sets.
func TestDocsAgreeWithWebhookConfigurations(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../docs/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	webhookDoc := read("webhook.md")
	table := section(t, webhookDoc, "## The webhook configurations")
	fields := webhookFields()

	// The table: a header naming the webhooks, then one row per field.
	type cell struct {
		field, webhook, text string
	}
	var cells []cell
	var columns []string
	rowRE := regexp.MustCompile("^\\| `([a-zA-Z.]+)` \\|(.*)\\|$")
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "| field |") {
			for _, c := range strings.Split(strings.Trim(line, "|"), "|")[1:] {
				columns = append(columns, strings.Trim(strings.TrimSpace(c), "`"))
			}
			continue
		}
		m := rowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		vals := strings.Split(m[2], " | ")
		if len(vals) != len(columns) {
			t.Fatalf("row %q has %d values for %d webhooks", line, len(vals), len(columns))
		}
		for i, v := range vals {
			cells = append(cells, cell{m[1], columns[i], strings.TrimSpace(v)})
		}
	}
	if len(columns) != 2 || len(cells) < 2*8 {
		t.Fatalf("read %d webhooks and %d cells from the table in docs/webhook.md; is it still there?", len(columns), len(cells))
	}

	// Each `field: value` in docs/webhook.md, and in the install section of docs/operations.md,
	// holds for every webhook that has the field.
	type mention struct{ where, field, value string }
	var mentions []mention
	mentionRE := regexp.MustCompile("`([a-zA-Z]+): ([^`]+)`")
	for where, text := range map[string]string{
		"docs/webhook.md":    webhookDoc,
		"docs/operations.md": section(t, read("operations.md"), "## What gets installed"),
	} {
		for _, m := range mentionRE.FindAllStringSubmatch(text, -1) {
			if slices.Contains(fields, m[1]) {
				mentions = append(mentions, mention{where, m[1], m[2]})
			}
		}
	}
	if len(mentions) < 4 {
		t.Fatalf("found %d `field: value` mentions of webhook fields in the docs, want at least 4", len(mentions))
	}

	parse := func(text string) any {
		var v any
		if err := yaml.Unmarshal([]byte(text), &v); err != nil {
			t.Fatalf("docs value %q is not YAML: %v", text, err)
		}
		return normalJSON(t, v)
	}
	for _, dir := range []string{"base", "overlays/gce", "overlays/ec2", "overlays/cert-manager"} {
		t.Run(dir, func(t *testing.T) {
			webhooks := docWebhooks(t, decode(t, render(t, dir)))
			if got := slices.Sorted(func(yield func(string) bool) {
				for name := range webhooks {
					if !yield(name) {
						return
					}
				}
			}); !slices.Equal(got, slices.Sorted(slices.Values(columns))) {
				t.Fatalf("the install has webhooks %q, docs/webhook.md's table %q", got, columns)
			}
			documented := map[string]bool{}
			for _, c := range cells {
				documented[strings.Split(c.field, ".")[0]] = true
				got, set := lookup(webhooks[c.webhook], c.field)
				if strings.HasPrefix(c.text, "none") {
					if set {
						t.Errorf("docs/webhook.md: %s has no %s; the install sets %v", c.webhook, c.field, got)
					}
					continue
				}
				text, ok := strings.CutPrefix(c.text, "`")
				text, ok2 := strings.CutSuffix(text, "`")
				if !ok || !ok2 {
					t.Errorf("docs/webhook.md: %s %s: %q is neither `a value` nor none", c.webhook, c.field, c.text)
					continue
				}
				if diff := cmp.Diff(parse(text), got); !set || diff != "" {
					t.Errorf("docs/webhook.md: %s %s is %s; the install disagrees (-docs +install):\n%s", c.webhook, c.field, text, diff)
				}
			}
			// Every field the install sets is in the table.
			for name, w := range webhooks {
				for field := range w {
					if _, set := lookup(w, field); set && field != "name" && !documented[field] {
						t.Errorf("the install sets %s on %s, which docs/webhook.md's table does not state", field, name)
					}
				}
			}
			for _, m := range mentions {
				want := parse(m.value)
				has := 0
				for name, w := range webhooks {
					got, set := lookup(w, m.field)
					if !set {
						continue
					}
					has++
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("%s says `%s: %s`; %s disagrees (-docs +install):\n%s", m.where, m.field, m.value, name, diff)
					}
				}
				if has == 0 {
					t.Errorf("%s says `%s: %s`; no webhook of the install sets %s", m.where, m.field, m.value, m.field)
				}
			}
		})
	}
}
