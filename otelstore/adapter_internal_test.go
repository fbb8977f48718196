package otelstore

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/sessionkit/sessionkit/adapters/memory"
)

func TestAdapterNameIsThePackageName(t *testing.T) {
	require.Equal(t, "memory", adapterName(memory.New(nil)))
	require.Equal(t, "go-redis", adapterName(&redis.Client{}), "a major version suffix is not the name")
	require.Equal(t, "struct {}", adapterName(struct{}{}))
}
