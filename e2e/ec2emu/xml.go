package ec2emu

import (
	"encoding/xml"
	"net/http"
	"time"
)

// namespace is the XML namespace of EC2 API version 2016-11-15, the version the SDK speaks.
const (
	apiVersion = "2016-11-15"
	namespace  = "http://ec2.amazonaws.com/doc/" + apiVersion + "/"
)

// The reply shapes below follow the EC2 query protocol as aws-sdk-go-v2's deserializers read it
// (service/ec2/deserializers.go): lists are <xSet><item>..</item></xSet>, times are ISO 8601.

type runInstancesResponse struct {
	XMLName xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ RunInstancesResponse"`
	xmlReservation
}

type describeInstancesResponse struct {
	XMLName      xml.Name         `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DescribeInstancesResponse"`
	RequestID    string           `xml:"requestId"`
	Reservations []xmlReservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

type terminateInstancesResponse struct {
	XMLName   xml.Name         `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ TerminateInstancesResponse"`
	RequestID string           `xml:"requestId"`
	Instances []xmlStateChange `xml:"instancesSet>item"`
}

type xmlReservation struct {
	RequestID     string        `xml:"requestId,omitempty"`
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Groups        []xmlGroup    `xml:"groupSet>item"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type xmlGroup struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xmlState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xmlStateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xmlPlacement struct {
	AvailabilityZone string `xml:"availabilityZone"`
	Tenancy          string `xml:"tenancy"`
}

type xmlMetadataOptions struct {
	State        string `xml:"state"`
	HTTPTokens   string `xml:"httpTokens"`
	HTTPEndpoint string `xml:"httpEndpoint"`
	HopLimit     int    `xml:"httpPutResponseHopLimit,omitempty"`
}

// xmlIamInstanceProfile is the instance profile of an instance, as EC2 describes it.
type xmlIamInstanceProfile struct {
	Arn string `xml:"arn"`
	ID  string `xml:"id"`
}

type xmlInstance struct {
	InstanceID         string                 `xml:"instanceId"`
	ImageID            string                 `xml:"imageId"`
	State              xmlState               `xml:"instanceState"`
	PrivateDNSName     string                 `xml:"privateDnsName"`
	DNSName            string                 `xml:"dnsName"`
	Reason             string                 `xml:"reason"`
	AmiLaunchIndex     int                    `xml:"amiLaunchIndex"`
	InstanceType       string                 `xml:"instanceType"`
	LaunchTime         string                 `xml:"launchTime"`
	Placement          xmlPlacement           `xml:"placement"`
	SubnetID           string                 `xml:"subnetId"`
	VpcID              string                 `xml:"vpcId"`
	PrivateIPAddress   string                 `xml:"privateIpAddress"`
	Groups             []xmlGroup             `xml:"groupSet>item"`
	StateReason        *xmlStateReason        `xml:"stateReason,omitempty"`
	Architecture       string                 `xml:"architecture"`
	RootDeviceType     string                 `xml:"rootDeviceType"`
	RootDeviceName     string                 `xml:"rootDeviceName"`
	VirtualizationType string                 `xml:"virtualizationType"`
	ClientToken        string                 `xml:"clientToken,omitempty"`
	Tags               []xmlTag               `xml:"tagSet>item"`
	Hypervisor         string                 `xml:"hypervisor"`
	MetadataOptions    xmlMetadataOptions     `xml:"metadataOptions"`
	IamInstanceProfile *xmlIamInstanceProfile `xml:"iamInstanceProfile,omitempty"`
}

type xmlStateChange struct {
	InstanceID    string   `xml:"instanceId"`
	CurrentState  xmlState `xml:"currentState"`
	PreviousState xmlState `xml:"previousState"`
}

// errorResponse is the EC2 query protocol's error body.
type errorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Errors    []xmlErr `xml:"Errors>Error"`
	RequestID string   `xml:"RequestID"`
}

type xmlErr struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// stateCodes are EC2's instance state codes.
var stateCodes = map[string]int{
	statePending:      0,
	stateRunning:      16,
	stateShuttingDown: 32,
	stateTerminated:   48,
	"stopping":        64,
	"stopped":         80,
}

func xmlStateOf(name string) xmlState { return xmlState{Code: stateCodes[name], Name: name} }

// timeFormat is how EC2 writes timestamps.
const timeFormat = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// writeXML writes a successful reply.
func writeXML(w http.ResponseWriter, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}

// apiError is an EC2 error reply.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(status int, code, message string) *apiError {
	return &apiError{Status: status, Code: code, Message: message}
}

// writeError writes an EC2 error reply.
func writeError(w http.ResponseWriter, requestID string, e *apiError) {
	body, _ := xml.Marshal(errorResponse{Errors: []xmlErr{{Code: e.Code, Message: e.Message}}, RequestID: requestID})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.Status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}
