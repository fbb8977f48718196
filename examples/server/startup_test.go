package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/internal/testserver"
)

// runMainEnv makes the test binary run the example's main instead of the
// tests, so a test can watch the program start and exit as a user would.
const runMainEnv = "SESSIONKIT_EXAMPLE_SERVER_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	testserver.StopPostgres()
	os.Exit(code)
}

// runExample runs the example with args and returns its exit code, its
// output and how long it ran; it is killed after 10 s.
func runExample(t *testing.T, args ...string) (int, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("cannot run the example: %v", err)
	}
	return cmd.ProcessState.ExitCode(), string(out), time.Since(start)
}

// TestStartupFailsFastWhenTheStoreDoesNotAnswer starts the example on a
// Redis URL, with a password, where nothing listens: it must exit non-zero
// at once, name the URL with the password hidden, and never say it is
// listening.
func TestStartupFailsFastWhenTheStoreDoesNotAnswer(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	for _, url := range []string{"redis://:s3cretpw@" + addr + "/0", "memcached://" + addr} {
		code, out, took := runExample(t, "-addr", "127.0.0.1:0", "-store", url)
		t.Logf("%s: exit %d after %v:\n%s", url, code, took.Round(time.Millisecond), out)
		require.NotZero(t, code, url)
		require.Contains(t, out, "session store "+redacted(url)+" does not answer", url)
		require.Contains(t, out, "connection refused", "the cause is named")
		require.NotContains(t, out, "s3cretpw")
		require.NotContains(t, out, "listening")
		require.Less(t, took, 5*time.Second, "start-up gave up within the client's timeouts")
	}
}

func redacted(url string) string {
	if u, ok := strings.CutPrefix(url, "redis://:s3cretpw@"); ok {
		return "redis://:xxxxx@" + u
	}
	return url
}
