//! PEM certificate bundles: each `CERTIFICATE` block must be base64 of one DER-encoded ASN.1
//! SEQUENCE (an X.509 certificate's outer shape), so a placeholder, a truncated paste or a key
//! in the wrong field is caught here instead of making every proxy NACK the configuration.
//! (Whether the certificate is one Envoy will accept for its purpose, e.g. that a key matches
//! its certificate, is left to Envoy; a NACK of that kind is reported per proxy and object.)

use base64::Engine;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Checks a bundle of PEM certificates; returns how many it holds, or what is wrong.
pub fn certificates(text: &str) -> Result<usize, String> {
    let mut rest = text;
    let mut count = 0;
    while let Some(start) = rest.find(BEGIN) {
        let body_and_more = &rest[start + BEGIN.len()..];
        let Some(end) = body_and_more.find(END) else {
            return Err(format!("certificate {} has no {END} line", count + 1));
        };
        let body: String = body_and_more[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("certificate {} is not base64: {e}", count + 1))?;
        if !is_der_sequence(&der) {
            return Err(format!(
                "certificate {} is not a DER-encoded X.509 certificate",
                count + 1
            ));
        }
        count += 1;
        rest = &body_and_more[end + END.len()..];
    }
    if count == 0 {
        return Err(format!("no certificate: expected {BEGIN}"));
    }
    Ok(count)
}

/// Whether `der` is exactly one ASN.1 SEQUENCE with a well-formed length.
fn is_der_sequence(der: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = der else {
        return false;
    };
    let (len, header) = if first & 0x80 == 0 {
        (usize::from(*first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return false;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    len > 0 && header + len == der.len()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real (example) CA certificate.
    pub(crate) const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUNl9S14+zRZOqp3EY/C+ioU7MKewwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSRXhhbXBsZSBCaWxsaW5nIENBMB4XDTI2MTEyNTE2MTIyMFoX
DTM2MTEyMjE2MTIyMFowHTEbMBkGA1UEAwwSRXhhbXBsZSBCaWxsaW5nIENBMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWldboCUqBgYoT199qi8gb6oKojIRu1Ea
CDcT5szFJ0m9+DYAy164ysPP3d0sOAuWHmCVCinxz+IacSTd381BDKNTMFEwHQYD
VR0OBBYEFJw5SjP4BXpLP8Lr23XzMeFdhTXdMB8GA1UdIwQYMBaAFJw5SjP4BXpL
P8Lr23XzMeFdhTXdMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh
APzqq8uwvNr5F2tPzABJgo7KrWqduIssWt9T9qK0YgR9AiBbaOZiOYZgT0MlParA
CrWuSbi9jKXqxl/yaFVFutNyrA==
-----END CERTIFICATE-----
";

    #[test]
    fn real_certificates_pass() {
        assert_eq!(certificates(CA), Ok(1));
        assert_eq!(certificates(&format!("{CA}\n{CA}")), Ok(2));
    }

    #[test]
    fn placeholders_and_garbage_fail() {
        let placeholder =
            "-----BEGIN CERTIFICATE-----\n(your CA here)\n-----END CERTIFICATE-----\n";
        assert!(certificates(placeholder).is_err());
        let not_der = "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n";
        assert_eq!(
            certificates(not_der),
            Err("certificate 1 is not a DER-encoded X.509 certificate".to_string())
        );
        let truncated = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(certificates(truncated).is_err());
        assert!(certificates("nothing").is_err());
        assert!(certificates(&CA.replace(END, "")).is_err());
    }
}
