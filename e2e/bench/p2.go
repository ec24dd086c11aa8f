package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/ipp-project/ipp/e2e/framework"
	"github.com/ipp-project/ipp/pkg/admission"
	"github.com/ipp-project/ipp/pkg/admission/admissiontest"
	"github.com/ipp-project/ipp/pkg/isolation"
	"github.com/ipp-project/ipp/pkg/webhook"
)

// P2Config sizes P2.
type P2Config struct {
	// Placement is the webhook's --placement, which decides its patch: admission (pin each class
	// to its one node by name) or controller (gate each Pod and select its class key). The
	// AdmissionReviews sent are of the same placement, so that /validate allows them.
	Placement isolation.Placement `json:"placement"`
	// Concurrency are the numbers of clients of the /mutate runs.
	Concurrency []int `json:"concurrency"`
	// Duration is how long each run is measured, after Warmup.
	Duration metav1.Duration `json:"duration"`
	Warmup   metav1.Duration `json:"warmup"`
	// PacedRate, when set, adds a /mutate run from PacedClients clients paced to this many
	// requests/s in total: latency below saturation, where the closed-loop runs measure it at
	// saturation.
	PacedRate    int `json:"pacedRate,omitempty"`
	PacedClients int `json:"pacedClients,omitempty"`
	// CreatePods is how many Pods each side of the CREATE-latency comparison creates.
	CreatePods int `json:"createPods"`
	// LogFile receives the control plane's log; IPPBinary is the ipp binary (built from Repo
	// into WorkDir when empty); WorkDir also receives the profile and the webhook's log.
	LogFile   string `json:"-"`
	IPPBinary string `json:"-"`
	Repo      string `json:"-"`
	WorkDir   string `json:"-"`
}

// P2Result is P2's output.
type P2Result struct {
	Config P2Config `json:"config"`
	// Server is how the webhook process was run.
	Server string `json:"server"`
	// BodyBytes are the sizes of the AdmissionReviews sent.
	MutateBodyBytes   int     `json:"mutateBodyBytes"`
	ValidateBodyBytes int     `json:"validateBodyBytes"`
	Runs              []P2Run `json:"runs"`
	// PeakRSSMiB is the webhook process's VmHWM after every run.
	PeakRSSMiB float64 `json:"peakRSSMiB"`
	// Profile is a CPU profile of webhook.Serve in this process under the C=64 /mutate load.
	Profile string `json:"profile,omitempty"`
	// Create compares Pod CREATE through the apiserver with and without the webhooks.
	Create *P2Create `json:"create,omitempty"`
}

// P2Run is one load level against the webhook process.
type P2Run struct {
	Path        string `json:"path"`
	Protocol    string `json:"protocol"`
	Concurrency int    `json:"concurrency"`
	// PacedRate is the total request rate the clients were held to; 0 means as fast as they can.
	PacedRate float64 `json:"pacedRate,omitempty"`
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	// Seconds is the measured time (after the warm-up).
	Seconds        float64 `json:"seconds"`
	RequestsPerSec float64 `json:"requestsPerSecond"`
	Latency        Latency `json:"latency"`
	// ServerCPUSecPer1000 is the webhook process's user+system CPU per 1000 admissions, from
	// /proc/<pid>/stat; ClientCPUSecPer1000 is the load generator's (this process's).
	ServerCPUSecPer1000 float64 `json:"serverCPUSecondsPer1000"`
	ClientCPUSecPer1000 float64 `json:"clientCPUSecondsPer1000"`
	// ServerCPUUtil is server CPU seconds per second (2.0 = both CPUs).
	ServerCPUUtil float64 `json:"serverCPUUtilization"`
	ServerRSSMiB  float64 `json:"serverRSSMiB"`
	LoadAvg       float64 `json:"loadAvg"`
}

// P2Create is the latency of Pod CREATE, one at a time, through the in-process apiserver.
type P2Create struct {
	Pods int `json:"pods"`
	// WithWebhooks is in a namespace the Mutating- and ValidatingWebhookConfiguration select
	// (IPP Pods, so /mutate patches them); Without is in one they exempt.
	WithWebhooks Latency `json:"withWebhooks"`
	Without      Latency `json:"withoutWebhooks"`
	// AddedP50Ms and AddedP99Ms are the differences.
	AddedP50Ms float64 `json:"addedP50Ms"`
	AddedP99Ms float64 `json:"addedP99Ms"`
	LoadAvg    float64 `json:"loadAvg"`
}

// webhookConfig is the webhook's configuration in P2: the default, with cfg.Placement.
func (cfg P2Config) webhookConfig() isolation.Config {
	c := isolation.DefaultConfig()
	if cfg.Placement != "" {
		c.Placement = cfg.Placement
	}
	return c
}

// RunP2 runs P2.
func RunP2(ctx context.Context, cfg P2Config) (*P2Result, error) {
	logger := klog.FromContext(ctx)
	res := &P2Result{Config: cfg}
	bin, err := ippBinary(ctx, cfg.IPPBinary, cfg.Repo, cfg.WorkDir)
	if err != nil {
		return res, err
	}
	ca, err := framework.NewCA("ipp-bench-ca")
	if err != nil {
		return res, err
	}
	iso := cfg.webhookConfig()
	mutate, validate, err := p2Bodies(iso)
	if err != nil {
		return res, err
	}
	res.MutateBodyBytes, res.ValidateBodyBytes = len(mutate), len(validate)

	srv, err := startWebhookProcess(ctx, bin, ca, cfg.WorkDir, iso.Placement)
	if err != nil {
		return res, err
	}
	res.Server = srv.command
	type load struct {
		path  string
		body  []byte
		h2    bool
		conns int
		rate  float64
	}
	var loads []load
	for _, c := range cfg.Concurrency {
		loads = append(loads, load{webhook.MutatePath, mutate, false, c, 0})
	}
	top := cfg.Concurrency[len(cfg.Concurrency)-1]
	loads = append(loads, load{webhook.ValidatePath, validate, false, top, 0}, load{webhook.MutatePath, mutate, true, top, 0})
	if cfg.PacedRate > 0 {
		loads = append(loads, load{webhook.MutatePath, mutate, false, cfg.PacedClients, float64(cfg.PacedRate)})
	}
	for _, l := range loads {
		run, err := generateLoad(ctx, srv.url+l.path, l.body, ca.CertPool(), l.conns, l.h2, l.rate, cfg.Warmup.Duration, cfg.Duration.Duration, srv.pid)
		if err != nil {
			srv.stop()
			return res, err
		}
		run.Path = l.path
		res.Runs = append(res.Runs, run)
		logger.Info("P2 run", "path", run.Path, "protocol", run.Protocol, "clients", run.Concurrency, "reqPerSec", int(run.RequestsPerSec),
			"p50Ms", run.Latency.P50, "p99Ms", run.Latency.P99, "p999Ms", run.Latency.P999, "serverCPUSecPer1000", run.ServerCPUSecPer1000, "errors", run.Errors, "loadAvg", run.LoadAvg)
	}
	if st, err := ReadProcStat(srv.pid); err == nil {
		res.PeakRSSMiB = MiB(st.HWM)
	}
	if err := srv.stop(); err != nil {
		return res, err
	}

	res.Profile = filepath.Join(cfg.WorkDir, "profiles", "p2-webhook-serve.pprof")
	if err := profileServe(ctx, iso, res.Profile, mutate, top, cfg.Duration.Duration); err != nil {
		return res, err
	}

	res.Create, err = measureCreate(ctx, cfg)
	if err != nil {
		return res, err
	}
	logger.Info("P2 create latency", "withP50Ms", res.Create.WithWebhooks.P50, "withP99Ms", res.Create.WithWebhooks.P99,
		"withoutP50Ms", res.Create.Without.P50, "withoutP99Ms", res.Create.Without.P99)
	return res, nil
}

// ippBinary returns bin, or builds ./cmd/ipp of repo into dir.
func ippBinary(ctx context.Context, bin, repo, dir string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	out, err := filepath.Abs(filepath.Join(dir, "ipp"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/ipp")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ipp in %s: %w: %s", repo, err, b)
	}
	return out, nil
}

// p2Bodies returns the AdmissionReviews sent: a Deployment-made IPP Pod as /mutate gets it, and
// the same Pod with the patch of a webhook configured as cfg applied, as /validate gets it.
func p2Bodies(cfg isolation.Config) (mutate, validate []byte, err error) {
	req := admissiontest.Request(p2UID, "team-a", admissiontest.Pod("class0"))
	resp := admission.MutateReview(cfg, &admission.Review{Request: req})
	if !resp.Allowed || len(resp.Patch) == 0 {
		return nil, nil, fmt.Errorf("mutating the sample pod: allowed=%v, %d bytes of patch", resp.Allowed, len(resp.Patch))
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		return nil, nil, fmt.Errorf("decoding the sample patch: %w", err)
	}
	pinned, err := patch.Apply(req.Object.Raw)
	if err != nil {
		return nil, nil, fmt.Errorf("applying the sample patch: %w", err)
	}
	vreq := req.DeepCopy()
	vreq.Object.Raw = pinned
	return admissiontest.Review(req), admissiontest.Review(vreq), nil
}

// webhookProcess is `ipp webhook` running as a child process.
type webhookProcess struct {
	cmd     *exec.Cmd
	pid     int
	url     string
	command string
	log     *os.File
	done    chan error
}

func startWebhookProcess(ctx context.Context, bin string, ca *framework.CA, dir string, placement isolation.Placement) (*webhookProcess, error) {
	kp, err := ca.ServingCert("ipp-webhook", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	certDir, err := os.MkdirTemp("", "ipp-bench-webhook-")
	if err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")
	if err := os.WriteFile(certFile, kp.CertPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, kp.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	// Metrics on a port of their own, so that P2 does not collide with anything on the default
	// :8080 (P3's controller, say); the admission metrics are recorded either way. P2 has no
	// cluster for the webhook to watch IPP nodes or NodeClasses in, and its Pods name no node, so
	// the nodeName check would never look them up: --watch-ipp-nodes=false and
	// --watch-node-classes=false.
	args := []string{"webhook", "--listen-address=" + addr, "--tls-cert-file=" + certFile, "--tls-private-key-file=" + keyFile, "--metrics-address=127.0.0.1:0", "--watch-ipp-nodes=false", "--watch-node-classes=false", "--placement=" + string(placement)}
	logf, err := os.Create(filepath.Join(dir, "p2-webhook.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &webhookProcess{cmd: cmd, pid: cmd.Process.Pid, url: "https://" + addr, log: logf, done: make(chan error, 1),
		command: "ipp " + fmt.Sprint(args)}
	go func() { p.done <- cmd.Wait() }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.CertPool()}}, Timeout: time.Second}
	err = pollUntil(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		select {
		case err := <-p.done:
			return false, fmt.Errorf("ipp webhook exited: %v (log %s)", err, logf.Name())
		default:
		}
		resp, err := client.Get(p.url + webhook.HealthzPath)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		_ = p.stop()
		return nil, fmt.Errorf("waiting for ipp webhook: %w", err)
	}
	return p, nil
}

func (p *webhookProcess) stop() error {
	defer func() { _ = p.log.Close() }()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return fmt.Errorf("stopping ipp webhook: %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		return errors.New("ipp webhook did not stop within 30s of SIGTERM")
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// generateLoad sends body to url from conns clients, each with its own keep-alive connection
// (HTTP/1.1), or all multiplexed on one HTTP/2 connection as the apiserver's webhook client
// does. It measures for d after a warm-up; pid is the server, whose CPU and RSS it reads.
//
// Every request is the whole AdmissionReview with a UID of its own (the last 12 hex digits of the
// sample's UID count the client and its requests), and every answer must be a 200 that echoes that
// UID, allows, and, on /mutate, carries a patch. Over HTTP/1.1 each client writes its requests on
// its TLS connection itself and reads the answers with net/http's response parser (see h1Client);
// over HTTP/2 it uses net/http's Transport.
//
// With rate > 0 the clients are paced to rate requests/s in total instead of sending as fast as
// they can: client i sends its k-th request at start + (k*conns+i)/rate, and its latency counts
// from that intended time, so a slow reply that delays the next request is not hidden.
func generateLoad(ctx context.Context, url string, body []byte, roots *x509.CertPool, conns int, h2 bool, rate float64, warmup, d time.Duration, pid int) (P2Run, error) {
	run := P2Run{Concurrency: conns, Protocol: "HTTP/1.1", PacedRate: rate, LoadAvg: LoadAvg()}
	wantPatch := strings.HasSuffix(url, webhook.MutatePath)
	uidAt := bytes.Index(body, []byte(`"uid":"`+p2UID+`"`))
	if uidAt < 0 || bytes.Count(body, []byte(p2UID)) != 1 {
		return run, fmt.Errorf("the AdmissionReview sent must carry the request UID %s exactly once", p2UID)
	}
	uidAt += len(`"uid":"`)
	var shared *http.Transport
	if h2 {
		run.Protocol = "HTTP/2"
		shared = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true, DisableCompression: true}
		defer shared.CloseIdleConnections()
	}

	start := time.Now()
	measureFrom, measureTo := start.Add(warmup), start.Add(warmup+d)
	lat := make([][]time.Duration, conns)
	errs := make([]int, conns)
	var wg sync.WaitGroup
	for i := range conns {
		req := &p2Request{body: bytes.Clone(body), uidAt: uidAt, client: i, wantPatch: wantPatch}
		var send func(*p2Request) bool
		if shared != nil {
			client := &http.Client{Transport: shared, Timeout: 10 * time.Second}
			send = func(r *p2Request) bool { return post(client, url, r) }
		} else {
			c, err := newH1Client(url, roots)
			if err != nil {
				return run, err
			}
			defer c.close()
			send = c.post
		}
		wg.Go(func() {
			for k := 0; ctx.Err() == nil; k++ {
				t0 := time.Now()
				if rate > 0 {
					t0 = start.Add(time.Duration(float64(k*conns+i) / rate * float64(time.Second)))
					sleepUntil(ctx, t0)
				}
				if t0.After(measureTo) {
					return
				}
				req.next()
				ok := send(req)
				t1 := time.Now()
				if t0.Before(measureFrom) {
					continue
				}
				if !ok {
					errs[i]++
					continue
				}
				lat[i] = append(lat[i], t1.Sub(t0))
			}
		})
	}
	sleepUntil(ctx, measureFrom)
	srv0, err := ReadProcStat(pid)
	if err != nil {
		return run, err
	}
	self0, _ := ReadProcStat(os.Getpid())
	t0 := time.Now()
	sleepUntil(ctx, measureTo)
	srv1, err := ReadProcStat(pid)
	if err != nil {
		return run, err
	}
	self1, _ := ReadProcStat(os.Getpid())
	elapsed := time.Since(t0)
	wg.Wait()

	var all []time.Duration
	for i := range lat {
		all = append(all, lat[i]...)
		run.Errors += errs[i]
	}
	run.Requests = len(all)
	run.Seconds = elapsed.Seconds()
	run.RequestsPerSec = float64(run.Requests) / run.Seconds
	run.Latency = Summarize(all)
	if run.Requests > 0 {
		run.ServerCPUSecPer1000 = (srv1.CPU - srv0.CPU).Seconds() / float64(run.Requests) * 1000
		run.ClientCPUSecPer1000 = (self1.CPU - self0.CPU).Seconds() / float64(run.Requests) * 1000
	}
	run.ServerCPUUtil = (srv1.CPU - srv0.CPU).Seconds() / run.Seconds
	run.ServerRSSMiB = MiB(srv1.RSS)
	return run, ctx.Err()
}

// p2UID is the UID of the sample request; each request sent replaces its last 12 hex digits.
const p2UID = "5d1e0c1a-0000-4000-8000-000000000001"

// p2Request is one client's AdmissionReview, with the UID of its latest request.
type p2Request struct {
	body      []byte
	uidAt     int
	client    int
	seq       uint32
	wantPatch bool
}

// next gives the request the client's next UID: 4 hex digits of the client (from 1), 8 of the
// sequence.
func (r *p2Request) next() {
	r.seq++
	const hexDigits = "0123456789abcdef"
	tail := r.body[r.uidAt+len(p2UID)-12 : r.uidAt+len(p2UID)]
	v := uint64((r.client+1)&0xffff)<<32 | uint64(r.seq) // never the sample's own UID
	for i := len(tail) - 1; i >= 0; i-- {
		tail[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func (r *p2Request) uid() []byte { return r.body[r.uidAt : r.uidAt+len(p2UID)] }

// check reports whether b, the body of a 200, answers r: it echoes r's UID, allows, and carries a
// patch when r is for /mutate.
func (r *p2Request) check(b []byte) bool {
	i := bytes.Index(b, []byte(`"uid":"`))
	if i < 0 {
		return false
	}
	i += len(`"uid":"`)
	if !bytes.HasPrefix(b[i:], r.uid()) || len(b) <= i+len(p2UID) || b[i+len(p2UID)] != '"' {
		return false
	}
	return bytes.Contains(b, []byte(`"allowed":true`)) && bytes.Contains(b, []byte(`"patch":"`)) == r.wantPatch
}

// post sends one AdmissionReview with net/http's client and reports whether the answer passes
// r.check.
func post(client *http.Client, url string, r *p2Request) bool {
	resp, err := client.Post(url, "application/json", bytes.NewReader(r.body))
	if err != nil {
		return false
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return err == nil && resp.StatusCode == http.StatusOK && r.check(b)
}

// h1Client sends HTTP/1.1 POSTs on one keep-alive TLS connection, one at a time: the request
// line, headers and body in one Write, the answer read with http.ReadResponse. It is what
// net/http's Transport does for one connection, without the Transport's connection pool and its
// two goroutines per connection, whose scheduling would cost the shared CPUs as much as the
// server's work. A failed request closes the connection; the next one dials again.
type h1Client struct {
	addr, host, path string
	tls              *tls.Config
	conn             *tls.Conn
	br               *bufio.Reader
	out, in          []byte
}

func newH1Client(rawURL string, roots *x509.CertPool) (*h1Client, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("load generator URL %q: want https://host:port/path (%v)", rawURL, err)
	}
	return &h1Client{addr: u.Host, host: u.Host, path: u.RequestURI(), tls: &tls.Config{RootCAs: roots, ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}}, nil
}

func (c *h1Client) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

func (c *h1Client) post(r *p2Request) bool {
	if !c.roundTrip(r) {
		c.close()
		return false
	}
	return true
}

func (c *h1Client) roundTrip(r *p2Request) bool {
	if c.conn == nil {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", c.addr, c.tls)
		if err != nil {
			return false
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 8<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	if err := c.conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return false
	}
	c.out = append(c.out[:0], "POST "...)
	c.out = append(c.out, c.path...)
	c.out = append(c.out, " HTTP/1.1\r\nHost: "...)
	c.out = append(c.out, c.host...)
	c.out = append(c.out, "\r\nUser-Agent: ipp-bench\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.out = strconv.AppendInt(c.out, int64(len(r.body)), 10)
	c.out = append(c.out, "\r\n\r\n"...)
	c.out = append(c.out, r.body...)
	if _, err := c.conn.Write(c.out); err != nil {
		return false
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK || resp.Close || resp.ContentLength > 1<<20 {
		return false
	}
	if resp.ContentLength < 0 { // chunked
		c.in, err = io.ReadAll(resp.Body)
	} else {
		c.in = slices.Grow(c.in[:0], int(resp.ContentLength))[:resp.ContentLength]
		_, err = io.ReadFull(resp.Body, c.in)
	}
	return err == nil && r.check(c.in)
}

// sleepUntil waits until t or until ctx ends. The load generator measures fixed time windows.
func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

// profileServe runs webhook.Serve in this process under the same /mutate load from conns
// clients and writes a CPU profile of the whole process (server and load generator; the server's
// share is under net/http.(*conn).serve).
func profileServe(ctx context.Context, iso isolation.Config, path string, body []byte, conns int, d time.Duration) error {
	ca, err := framework.NewCA("ipp-bench-profile-ca")
	if err != nil {
		return err
	}
	kp, err := ca.ServingCert("ipp-webhook", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		return err
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		return err
	}
	url, stopServe, err := serveWebhook(ctx, iso, &cert)
	if err != nil {
		return err
	}
	defer stopServe()
	stop, err := startCPUProfile(path)
	if err != nil {
		return err
	}
	_, err = generateLoad(ctx, url+webhook.MutatePath, body, ca.CertPool(), conns, false, 0, 0, d, os.Getpid())
	stop()
	return err
}

// serveWebhook runs webhook.Serve in this process on a loopback port with cert, configured as
// iso, and returns its https URL and a function that stops it.
func serveWebhook(ctx context.Context, iso isolation.Config, cert *tls.Certificate) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(klog.NewContext(ctx, klog.Background()))
	done := make(chan error, 1)
	go func() {
		done <- webhook.Serve(sctx, iso, webhook.ServerOptions{
			Listener:       ln,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil },
		})
	}()
	return "https://" + ln.Addr().String(), func() { cancel(); <-done }, nil
}

// measureCreate creates IPP Pods one at a time, alternating between a namespace the webhooks
// select and one they exempt, and compares the latency of the Create calls.
func measureCreate(ctx context.Context, cfg P2Config) (*P2Create, error) {
	cluster, err := StartCluster(ctx, cfg.LogFile, false)
	if err != nil {
		return nil, err
	}
	defer cluster.Stop()
	const with, without = "bench-webhook", "bench-nowebhook"
	if _, _, err := cluster.RegisterWebhook(ctx, cfg.webhookConfig(), without); err != nil {
		return nil, err
	}
	for _, ns := range []string{with, without} {
		if _, err := cluster.CreateNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	res := &P2Create{Pods: cfg.CreatePods, LoadAvg: LoadAvg()}
	var withLat, withoutLat []time.Duration
	// A warm-up of 50 Pods each way: connections, caches.
	for i := range cfg.CreatePods + 50 {
		for _, ns := range []string{with, without} {
			p := BenchPod(fmt.Sprintf("create-%05d", i), map[string]string{isolation.DefaultPodLabel: fmt.Sprintf("c%d", i%10)})
			t0 := time.Now()
			if _, err := cluster.Fast.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				return nil, fmt.Errorf("creating pod %s/%s: %w", ns, p.Name, err)
			}
			d := time.Since(t0)
			if i < 50 {
				continue
			}
			if ns == with {
				withLat = append(withLat, d)
			} else {
				withoutLat = append(withoutLat, d)
			}
		}
	}
	res.WithWebhooks, res.Without = Summarize(withLat), Summarize(withoutLat)
	res.AddedP50Ms = res.WithWebhooks.P50 - res.Without.P50
	res.AddedP99Ms = res.WithWebhooks.P99 - res.Without.P99
	return res, nil
}
