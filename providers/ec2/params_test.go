package ec2

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	ippv1alpha1 "github.com/ipp-project/ipp/pkg/apis/ipp/v1alpha1"
	"github.com/ipp-project/ipp/pkg/bootstrap"
	"github.com/ipp-project/ipp/pkg/cloudprovider"
	"github.com/ipp-project/ipp/pkg/isolation"
)

func TestClientToken(t *testing.T) {
	keys := []string{"", "k", "ipp-class0-cb543558de22/1", strings.Repeat("x", 500), "ünïcödé key"}
	seen := map[string]string{}
	for _, cluster := range []string{"prod", "staging"} {
		for _, key := range keys {
			for _, typ := range []string{"i3.metal", "m5.metal"} {
				for _, subnet := range []string{"", "subnet-1", "subnet-2"} {
					tok := clientToken(cluster, key, typ, subnet)
					id := fmt.Sprintf("cluster %q key %q type %q subnet %q", cluster, key, typ, subnet)
					if len(tok) > maxClientToken {
						t.Errorf("%s: token %q has %d characters, more than %d", id, tok, len(tok), maxClientToken)
					}
					for _, r := range tok {
						if r > 127 {
							t.Errorf("%s: token %q is not ASCII", id, tok)
						}
					}
					if again := clientToken(cluster, key, typ, subnet); again != tok {
						t.Errorf("%s: token not stable: %q then %q", id, tok, again)
					}
					if prev, ok := seen[tok]; ok {
						t.Errorf("%s has token %q, same as %s", id, tok, prev)
					}
					seen[tok] = id
				}
			}
		}
	}
}

func TestParseLaunchTemplate(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    *types.LaunchTemplateSpecification
		wantErr bool
	}{
		{name: "empty", in: ""},
		{name: "id", in: "lt-0123456789abcdef0", want: &types.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-0123456789abcdef0")}},
		{name: "id with version", in: "lt-0123:3", want: &types.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-0123"), Version: aws.String("3")}},
		{name: "name", in: "ipp-nodes", want: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ipp-nodes")}},
		{name: "name latest", in: "ipp-nodes:$Latest", want: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ipp-nodes"), Version: aws.String("$Latest")}},
		{name: "name default", in: "ipp-nodes:$Default", want: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ipp-nodes"), Version: aws.String("$Default")}},
		{name: "no ref", in: ":3", wantErr: true},
		{name: "empty version", in: "ipp-nodes:", wantErr: true},
		{name: "zero version", in: "ipp-nodes:0", wantErr: true},
		{name: "bad version", in: "ipp-nodes:latest", wantErr: true},
		{name: "two colons", in: "ipp-nodes:1:2", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLaunchTemplate(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseLaunchTemplate(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(types.LaunchTemplateSpecification{})); diff != "" {
				t.Errorf("parseLaunchTemplate(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestRegistrationTimeout(t *testing.T) {
	tests := []struct {
		instanceType string
		want         time.Duration
	}{
		{"i3.metal", DefaultMetalRegistrationTimeout},
		{"m7i.metal-24xl", DefaultMetalRegistrationTimeout},
		{"c5.metal", DefaultMetalRegistrationTimeout},
		{"m5.xlarge", DefaultRegistrationTimeout},
		{"t3.micro", DefaultRegistrationTimeout},
		{"metal", DefaultRegistrationTimeout},
		{"x.metalish", DefaultRegistrationTimeout},
	}
	for _, tt := range tests {
		if got := registrationTimeout(tt.instanceType); got != tt.want {
			t.Errorf("registrationTimeout(%q) = %v, want %v", tt.instanceType, got, tt.want)
		}
	}
}

func TestConfigComplete(t *testing.T) {
	valid := func() Config {
		return Config{ClusterName: "c", Region: "us-east-1", ImageID: "ami-1"}
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.InstanceType != "i3.metal" || c.RegistrationTimeout != DefaultMetalRegistrationTimeout ||
				c.MaxAttempts != DefaultMaxAttempts || c.MaxBackoff != DefaultMaxBackoff || c.Renderer == nil {
				t.Errorf("defaults not filled: %+v", c)
			}
		}},
		{name: "virtual type", mutate: func(c *Config) { c.InstanceType = "m5.large" }, check: func(t *testing.T, c Config) {
			if c.RegistrationTimeout != DefaultRegistrationTimeout {
				t.Errorf("RegistrationTimeout = %v, want %v", c.RegistrationTimeout, DefaultRegistrationTimeout)
			}
		}},
		{name: "explicit timeout", mutate: func(c *Config) { c.RegistrationTimeout = time.Minute }, check: func(t *testing.T, c Config) {
			if c.RegistrationTimeout != time.Minute {
				t.Errorf("RegistrationTimeout = %v, want 1m", c.RegistrationTimeout)
			}
		}},
		{name: "template instead of image", mutate: func(c *Config) { c.ImageID = ""; c.LaunchTemplate = "nodes" }},
		{name: "no cluster", mutate: func(c *Config) { c.ClusterName = "" }, wantErr: "cluster"},
		{name: "no region", mutate: func(c *Config) { c.Region = "" }, wantErr: "region"},
		{name: "no image", mutate: func(c *Config) { c.ImageID = "" }, wantErr: "image"},
		{name: "bad template", mutate: func(c *Config) { c.LaunchTemplate = "nodes:x" }, wantErr: "version"},
		{name: "empty subnet", mutate: func(c *Config) { c.SubnetIDs = []string{"subnet-1", ""} }, wantErr: "subnet"},
		{name: "empty group", mutate: func(c *Config) { c.SecurityGroupIDs = []string{""} }, wantErr: "security group"},
		{name: "negative", mutate: func(c *Config) { c.MaxBackoff = -1 }, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			_, err := c.complete()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("complete() error = %v, want one about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("complete() error = %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestProviderIDCommand runs the command that the default bootstrap embeds, in bash, against a
// stand-in curl that answers like the instance metadata service with IMDSv2.
func TestProviderIDCommand(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	curl := `#!/bin/sh
token=""; url=""; put=""
while [ $# -gt 0 ]; do
  case "$1" in
    -X) put="$2"; shift ;;
    -H) case "$2" in "X-aws-ec2-metadata-token: "*) token="${2#X-aws-ec2-metadata-token: }" ;; esac; shift ;;
    http*) url="$1" ;;
  esac
  shift
done
case "$url" in
  */latest/api/token) [ "$put" = PUT ] && printf 'tok123' && exit 0 ;;
  */meta-data/placement/availability-zone) [ "$token" = tok123 ] && printf 'eu-west-1b' && exit 0 ;;
  */meta-data/instance-id) [ "$token" = tok123 ] && printf 'i-0abc' && exit 0 ;;
esac
echo "curl: unexpected $url" >&2; exit 22
`
	if err := os.WriteFile(filepath.Join(dir, "curl"), []byte(curl), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, "-c", "echo \"--provider-id=$("+providerIDCommand+")\"")
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running the providerID command: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "--provider-id=aws:///eu-west-1b/i-0abc"; got != want {
		t.Errorf("providerID command printed %q, want %q", got, want)
	}
}

// TestDefaultUserData renders the default bootstrap as Create does and checks that bash accepts
// it and that it carries the node name, labels, taints and providerID command.
func TestDefaultUserData(t *testing.T) {
	cfg := isolation.DefaultConfig()
	r, err := bootstrap.NewRenderer("")
	if err != nil {
		t.Fatal(err)
	}
	script, err := r.Render(bootstrap.Params{
		Join:              bootstrap.Join{APIServerEndpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", CACertHash: "sha256:" + strings.Repeat("0f", 32)},
		NodeName:          "ipp-class0-cb543558de22",
		Labels:            cfg.NodeLabels(),
		Taints:            cfg.Taints(),
		ProviderIDCommand: providerIDCommand,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--hostname-override=ipp-class0-cb543558de22",
		"--register-with-taints=ipp=true:NoSchedule,ipp=true:NoExecute",
		"--provider-id=$(" + providerIDCommand + ")",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("user data lacks %q:\n%s", want, script)
		}
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command(bash, "-n", "-c", script).CombinedOutput(); err != nil {
			t.Errorf("bash -n rejects the user data: %v\n%s\n%s", err, out, script)
		}
	}
}

func TestRegistrationTimeoutFor(t *testing.T) {
	metal := cloudprovider.InstanceSpec{EC2: &ippv1alpha1.EC2NodeClass{InstanceTypes: []string{"m5.large", "m5.metal"}}}
	vm := cloudprovider.InstanceSpec{EC2: &ippv1alpha1.EC2NodeClass{InstanceTypes: []string{"m5.large"}}}
	flags := cloudprovider.InstanceSpec{}
	tests := []struct {
		name       string
		configured time.Duration
		spec       cloudprovider.InstanceSpec
		want       time.Duration
	}{
		{"a metal fallback", 0, metal, DefaultMetalRegistrationTimeout},
		{"virtual machines only", 0, vm, DefaultRegistrationTimeout},
		{"the flags' type", 0, flags, DefaultMetalRegistrationTimeout},
		{"configured", time.Minute, metal, time.Minute},
	}
	for _, tt := range tests {
		cfg := Config{ClusterName: "c", Region: "us-east-1", ImageID: "ami-1", RegistrationTimeout: tt.configured}
		if _, err := cfg.complete(); err != nil {
			t.Fatal(err)
		}
		p := &Provider{cfg: cfg}
		if got := p.RegistrationTimeoutFor(tt.spec); got != tt.want {
			t.Errorf("%s: RegistrationTimeoutFor = %v, want %v", tt.name, got, tt.want)
		}
	}
}
