package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCert is a self-signed serving certificate for 127.0.0.1 and localhost.
type testCert struct {
	certPEM, keyPEM []byte
	serial          *big.Int
	x509            *x509.Certificate
}

var serials = big.NewInt(1000)

func newTestCert(t testing.TB, name string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serials.Add(serials, big.NewInt(1))
	serial := new(big.Int).Set(serials)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		serial:  serial,
		x509:    parsed,
	}
}

// writeFileAtomic writes data to a temporary file beside path and renames it over path.
func writeFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writePair writes c to certFile and keyFile, each atomically.
func (c testCert) writePair(t testing.TB, certFile, keyFile string) {
	writeFileAtomic(t, certFile, c.certPEM)
	writeFileAtomic(t, keyFile, c.keyPEM)
}

// secretVolume lays out files the way the kubelet's atomic writer does for a Secret volume:
//
//	dir/..2026_01_01_00_00_00.000000001/tls.crt
//	dir/..data -> ..2026_01_01_00_00_00.000000001
//	dir/tls.crt -> ..data/tls.crt
//
// and updates them by writing a new timestamped directory and renaming a new ..data symlink over
// the old one.
type secretVolume struct {
	dir string
	gen int
}

func newSecretVolume(t testing.TB, c testCert) *secretVolume {
	v := &secretVolume{dir: t.TempDir()}
	v.update(t, c)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(v.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func (v *secretVolume) certFile() string { return filepath.Join(v.dir, "tls.crt") }
func (v *secretVolume) keyFile() string  { return filepath.Join(v.dir, "tls.key") }

func (v *secretVolume) update(t testing.TB, c testCert) {
	t.Helper()
	v.gen++
	ts := filepath.Join(v.dir, "..2026_01_01_00_00_00."+big.NewInt(int64(v.gen)).String())
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "tls.crt"), c.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "tls.key"), c.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// servedSerial makes a new TLS connection to addr and returns the serial number of the
// certificate the server presents, verified against roots.
func servedSerial(addr string, roots *x509.CertPool) (*big.Int, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}
