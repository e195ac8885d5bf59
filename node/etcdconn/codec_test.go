package etcdconn

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The codec writes the bytes gRPC's reflection codec writes and reads what it reads, for
// etcd's messages (gogo's methods) and for any other message (the fallback).
func TestCodecMatchesGRPCsProtoCodec(t *testing.T) {
	grpcCodec := encoding.GetCodecV2("proto")
	c := codec{fallback: grpcCodec}
	if c.Name() != grpcCodec.Name() {
		t.Fatalf("content subtype %q, gRPC's is %q", c.Name(), grpcCodec.Name())
	}
	cases := []struct {
		name      string
		msg, into any
	}{
		{"etcd request", &pb.RangeRequest{Key: []byte("/kiln/units/"), RangeEnd: []byte("/kiln/units0"), Limit: 5000, Revision: 42},
			&pb.RangeRequest{}},
		{"etcd response", &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 7}, Count: 1,
			Kvs: []*mvccpb.KeyValue{{Key: []byte("k"), Value: []byte("v"), ModRevision: 7, Lease: 3}}},
			&pb.RangeResponse{Count: 99, More: true}}, // stale fields of a reused message are cleared
		{"other message", wrapperspb.String("kiln"), &wrapperspb.StringValue{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ours, err := c.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := grpcCodec.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours.Materialize(), theirs.Materialize()) {
				t.Fatalf("wire bytes differ:\nours   %x\ngRPC's %x", ours.Materialize(), theirs.Materialize())
			}
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(theirs.Materialize())}, tc.into); err != nil {
				t.Fatal(err)
			}
			again, err := grpcCodec.Marshal(tc.into)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Materialize(), theirs.Materialize()) {
				t.Fatalf("decoded %v, want %v", tc.into, tc.msg)
			}
		})
	}
	if _, ok := any(&pb.RangeRequest{}).(gogoMessage); !ok {
		t.Fatal("etcd's messages lack gogo's methods: the codec would fall back to reflection")
	}
}
