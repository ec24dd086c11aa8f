package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// variantStyle gives each variant one colour and marker in every panel.
var variantStyle = map[string]struct {
	color color.Color
	shape draw.GlyphDrawer
}{
	VariantDedicated:  {color.RGBA{R: 0x1b, G: 0x9e, B: 0x77, A: 0xff}, draw.CircleGlyph{}},
	VariantLabelPin:   {color.RGBA{R: 0x75, G: 0x70, B: 0xb3, A: 0xff}, draw.TriangleGlyph{}},
	VariantBaseline:   {color.RGBA{R: 0x66, G: 0x66, B: 0x66, A: 0xff}, draw.SquareGlyph{}},
	VariantAutoscaler: {color.RGBA{R: 0xd9, G: 0x5f, B: 0x02, A: 0xff}, draw.CrossGlyph{}},
	VariantPlaced:     {color.RGBA{R: 0xe7, G: 0x29, B: 0x8a, A: 0xff}, draw.PyramidGlyph{}},
}

// PlotP1 draws P1's throughput (Pods/s) against the node count, one line per variant, in one
// panel per (mode, existing Pods per node), and writes it to path as PNG.
func PlotP1(res *P1Result, path string) error {
	type panelKey struct {
		mode     string
		existing int
	}
	series := map[panelKey]map[string]plotter.XYs{}
	var panels []panelKey
	for _, r := range res.Runs {
		// The placement mode times the IPP controller, not scheduling.
		if r.Error != "" || r.PodsPerSecond <= 0 || r.Mode == ModePlacement || r.Mode == ModePatchOnly {
			continue
		}
		k := panelKey{r.Mode, r.ExistingPerNode}
		if series[k] == nil {
			series[k] = map[string]plotter.XYs{}
			panels = append(panels, k)
		}
		xys := series[k][r.Variant]
		if i := slices.IndexFunc(xys, func(xy plotter.XY) bool { return xy.X == float64(r.Nodes) }); i >= 0 {
			// Repeats: the best run.
			xys[i].Y = max(xys[i].Y, r.PodsPerSecond)
			continue
		}
		series[k][r.Variant] = append(xys, plotter.XY{X: float64(r.Nodes), Y: r.PodsPerSecond})
	}
	if len(panels) == 0 {
		return fmt.Errorf("plotting P1: no successful runs")
	}
	sort.Slice(panels, func(i, j int) bool {
		if panels[i].mode != panels[j].mode {
			return panels[i].mode > panels[j].mode // scheduler-only first
		}
		return panels[i].existing < panels[j].existing
	})
	// One row per mode, one column per existing level.
	var nodes []float64
	for _, r := range res.Runs {
		if !slices.Contains(nodes, float64(r.Nodes)) {
			nodes = append(nodes, float64(r.Nodes))
		}
	}
	// The log axis needs a positive range, also in a panel without data (every run of that mode
	// and level failed) and with one node count.
	xMin, xMax := slices.Min(nodes), slices.Max(nodes)
	if xMin == xMax {
		xMin, xMax = xMin/2, xMax*2
	}
	var modes []string
	var levels []int
	for _, p := range panels {
		if len(modes) == 0 || modes[len(modes)-1] != p.mode {
			modes = append(modes, p.mode)
		}
		found := false
		for _, l := range levels {
			found = found || l == p.existing
		}
		if !found {
			levels = append(levels, p.existing)
		}
	}
	sort.Ints(levels)

	plots := make([][]*plot.Plot, len(modes))
	for i, m := range modes {
		plots[i] = make([]*plot.Plot, len(levels))
		for j, e := range levels {
			p := plot.New()
			p.Title.Text = fmt.Sprintf("%s, %d Pods/node already running", m, e)
			p.X.Label.Text = "nodes"
			p.Y.Label.Text = "Pods/s"
			p.Y.Min = 0
			// Node counts span a decade: a log axis spaces them evenly.
			p.X.Scale = plot.LogScale{}
			p.X.Min, p.X.Max = xMin, xMax
			p.X.Tick.Marker = nodeTicks(nodes)
			p.Add(plotter.NewGrid())
			p.Legend.Top = true
			p.Legend.Left = true
			byVariant := series[panelKey{m, e}]
			// Room above the lines for the legend.
			top := 0.0
			for _, xys := range byVariant {
				for _, xy := range xys {
					top = max(top, xy.Y)
				}
			}
			p.Y.Max = top * 1.5
			for _, v := range []string{VariantDedicated, VariantBaseline, VariantLabelPin, VariantAutoscaler, VariantPlaced} {
				xys := byVariant[v]
				if len(xys) == 0 {
					continue
				}
				sort.Slice(xys, func(a, b int) bool { return xys[a].X < xys[b].X })
				line, points, err := plotter.NewLinePoints(xys)
				if err != nil {
					return fmt.Errorf("plotting P1: %w", err)
				}
				st := variantStyle[v]
				line.Color, points.Color, points.Shape = st.color, st.color, st.shape
				line.Width = vg.Points(1.5)
				p.Add(line, points)
				p.Legend.Add(v, line, points)
			}
			plots[i][j] = p
		}
	}
	const w, h = 6 * vg.Inch, 4 * vg.Inch
	img := vgimg.New(w*vg.Length(len(levels)), h*vg.Length(len(modes)))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(modes), Cols: len(levels), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j := range plots[i] {
			if plots[i][j] != nil {
				plots[i][j].Draw(canvases[i][j])
			}
		}
	}
	return writePNG(img, path)
}

func writePNG(img *vgimg.Canvas, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("making plot dir: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// nodeTicks labels the node counts that were measured.
type nodeTicks []float64

func (t nodeTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for _, n := range t {
		if n >= min && n <= max {
			ticks = append(ticks, plot.Tick{Value: n, Label: fmt.Sprint(n)})
		}
	}
	return ticks
}
