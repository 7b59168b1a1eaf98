//! A subscriber on a real gRPC stream: it sends the subscriber's first request when it
//! connects and answers each response it reads with the subscriber's requests.

use crate::stream::AdsStream;
use crate::{ClientError, DeltaStream, DeltaSubscriber, SotwStream, SotwSubscriber};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use std::time::Duration;
use tonic::transport::Channel;

/// What a [`Client`] needs of a subscriber: how it answers a response, and whether it has
/// everything it subscribed to.
pub trait Subscriber {
    type Request;
    type Response;

    /// The ACK of `response` and the subscriptions it leads to.
    fn answer(&mut self, response: &Self::Response) -> Result<Vec<Self::Request>, ClientError>;

    /// The NACK of `response` with Envoy's error text.
    fn refuse(
        &mut self,
        response: &Self::Response,
        message: &str,
    ) -> Result<Self::Request, ClientError>;

    fn has_synced(&self) -> bool;
}

/// A subscriber on a stream.
pub struct Client<S: Subscriber> {
    stream: AdsStream<S::Request, S::Response>,
    subscriber: S,
}

/// An Envoy-like client on a SotW ADS stream.
pub type SotwClient = Client<SotwSubscriber>;

/// An Envoy-like client on a Delta ADS stream.
pub type DeltaClient = Client<DeltaSubscriber>;

// === impl Client ===

impl<S: Subscriber> Client<S> {
    /// The next response, not yet answered.
    pub async fn recv(&mut self, timeout: Duration) -> Result<S::Response, ClientError> {
        self.stream.recv(timeout).await
    }

    /// ACKs `response` and sends the subscriptions it leads to.
    pub async fn accept(&mut self, response: &S::Response) -> Result<(), ClientError> {
        for request in self.subscriber.answer(response)? {
            self.stream.send(request).await?;
        }
        Ok(())
    }

    /// NACKs `response` with Envoy's error text.
    pub async fn reject(
        &mut self,
        response: &S::Response,
        message: &str,
    ) -> Result<(), ClientError> {
        let nack = self.subscriber.refuse(response, message)?;
        self.stream.send(nack).await
    }

    /// Reads one response, accepts it and returns it.
    pub async fn next(&mut self, timeout: Duration) -> Result<S::Response, ClientError> {
        let response = self.recv(timeout).await?;
        self.accept(&response).await?;
        Ok(response)
    }

    /// Reads (and accepts) until everything subscribed to has arrived.
    pub async fn sync(&mut self, timeout: Duration) -> Result<(), ClientError> {
        while !self.subscriber.has_synced() {
            self.next(timeout).await?;
        }
        Ok(())
    }

    /// Reads (and accepts) until a response satisfies `done`; returns that response.
    pub async fn until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&S::Response) -> bool,
    ) -> Result<S::Response, ClientError> {
        loop {
            let response = self.next(timeout).await?;
            if done(&response) {
                return Ok(response);
            }
        }
    }

    pub fn subscriber(&self) -> &S {
        &self.subscriber
    }
}

impl SotwClient {
    /// Opens an ADS stream on `channel` and sends the subscriber's first request.
    pub async fn connect(
        channel: Channel,
        mut subscriber: SotwSubscriber,
    ) -> Result<Self, ClientError> {
        let stream = SotwStream::ads(channel, subscriber.start()).await?;
        Ok(Self { stream, subscriber })
    }
}

impl DeltaClient {
    /// Opens a Delta ADS stream on `channel` and sends the subscriber's first request.
    pub async fn connect(
        channel: Channel,
        mut subscriber: DeltaSubscriber,
    ) -> Result<Self, ClientError> {
        let stream = DeltaStream::ads(channel, subscriber.start()).await?;
        Ok(Self { stream, subscriber })
    }

    /// Subscribes to `names` of `type_url` (VHDS, on-demand CDS).
    pub async fn subscribe(
        &mut self,
        type_url: &str,
        names: Vec<String>,
    ) -> Result<(), ClientError> {
        let request = self.subscriber.subscribe(type_url, names);
        self.stream.send(request).await
    }
}

// === impl Subscriber ===

impl Subscriber for SotwSubscriber {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn answer(
        &mut self,
        response: &DiscoveryResponse,
    ) -> Result<Vec<DiscoveryRequest>, ClientError> {
        self.accept(response)
    }

    fn refuse(
        &mut self,
        response: &DiscoveryResponse,
        message: &str,
    ) -> Result<DiscoveryRequest, ClientError> {
        self.reject(response, message)
    }

    fn has_synced(&self) -> bool {
        self.synced()
    }
}

impl Subscriber for DeltaSubscriber {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn answer(
        &mut self,
        response: &DeltaDiscoveryResponse,
    ) -> Result<Vec<DeltaDiscoveryRequest>, ClientError> {
        Ok(self.accept(response))
    }

    fn refuse(
        &mut self,
        response: &DeltaDiscoveryResponse,
        message: &str,
    ) -> Result<DeltaDiscoveryRequest, ClientError> {
        Ok(self.reject(response, message))
    }

    fn has_synced(&self) -> bool {
        self.synced()
    }
}
