package etcdconn

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the fallback codec
	"google.golang.org/grpc/mem"
)

// gogoMessage is what etcd's API types (gogo/protobuf generated) have: their own wire encoding.
type gogoMessage interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
	Reset()
}

// codec is gRPC's "proto" codec for etcd's messages without protobuf reflection: it calls the
// Marshal and Unmarshal methods that gogo generated for etcd's API types. gRPC's own codec
// reaches them through google.golang.org/protobuf's reflection, which builds a descriptor and
// a field table for every message type it meets (about 0.4 MB of heap in a kiln-node that
// stays for the process's life). Other messages go to gRPC's codec. The bytes on the wire are
// the same protobuf encoding.
type codec struct{ fallback encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(gogoMessage)
	if !ok {
		return c.fallback.Marshal(v)
	}
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(gogoMessage)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	m.Reset()
	return m.Unmarshal(buf.ReadOnlyData()) // gogo's Unmarshal copies what it keeps
}

// Name is the content subtype: etcd's server decodes it with its usual protobuf codec.
func (codec) Name() string { return "proto" }

// dialOptions are the gRPC options of kiln's etcd clients: the codec above; an 8 KiB read
// buffer per connection instead of gRPC's 32 KiB (a client keeps a connection to every member;
// etcd's answers to kiln are small, and a large one is read in more calls); and write buffers
// that go back to a pool after each flush instead of staying with an idle connection.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec{fallback: encoding.GetCodecV2("proto")})),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithReadBufferSize(8 << 10),
	}
}
