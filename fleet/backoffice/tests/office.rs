// SPDX-License-Identifier: MIT OR Apache-2.0
//! The enrolment office against a real nats-server: two offices changing the gallery at once
//! never take one generation twice nor leave a gap, and what a gate would read folds to the
//! gallery both meant.

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use facegate_backoffice::office::Office;
use facegate_fleet::gallery::{
    Embedding, GALLERY_STREAM, GalleryChange, Person, TrustedKeys, verify,
};
use facegate_fleet_servers::NatsServer;

fn person(office: usize, i: usize) -> Person {
    let mut embedding = vec![0.0f32; 8];
    embedding[i % 8] = 1.0;
    Person {
        id: format!("o{office}-p{i}"),
        label: format!("Office {office} person {i}"),
        model: "test-embedder".into(),
        embedding: Embedding(embedding),
    }
}

#[test]
fn two_offices_at_once_take_every_generation_once_in_order() {
    const EACH: usize = 40;
    let nats = NatsServer::start("").expect("nats-server starts");
    let key = SigningKey::from_bytes(&[5; 32]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connect = || async { async_nats::connect(nats.url()).await.expect("connects") };
        facegate_backoffice::prepare_broker(&connect().await)
            .await
            .expect("the broker is prepared");
        let offices = [
            Office::new(connect().await, key.clone()),
            Office::new(connect().await, key.clone()),
        ];
        let runs = offices.iter().enumerate().map(|(n, office)| async move {
            let mut generations = Vec::new();
            for i in 0..EACH {
                generations.push(office.enrol(person(n, i)).await.expect("enrolled"));
            }
            generations
        });
        let taken: Vec<u64> = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect();
        let distinct: BTreeSet<u64> = taken.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            taken.len(),
            "a generation taken twice: {taken:?}"
        );
        assert_eq!(
            distinct,
            (1..=(2 * EACH) as u64).collect::<BTreeSet<_>>(),
            "generations with a gap"
        );

        // What a gate reads: each stream message verifies and carries its own sequence.
        let trusted = TrustedKeys::of([key.verifying_key()]);
        let js = async_nats::jetstream::new(connect().await);
        let stream = js.get_stream(GALLERY_STREAM).await.unwrap();
        for sequence in 1..=(2 * EACH) as u64 {
            let message = stream.get_raw_message(sequence).await.unwrap();
            let change: GalleryChange = verify(&message.payload, &trusted).unwrap();
            assert_eq!(change.generation, sequence);
        }
        let folded = offices[0].gallery().await.unwrap();
        assert!(folded.unreadable.is_empty(), "{:?}", folded.unreadable);
        assert_eq!(folded.gallery.generation(), (2 * EACH) as u64);
        assert_eq!(folded.gallery.active().count(), 2 * EACH);

        // A removal of someone not enrolled is refused, and takes no generation.
        let refused = offices[1].remove("nobody").await.unwrap_err();
        assert_eq!(refused.to_string(), "nobody: not enrolled");
        assert_eq!(offices[1].snapshot().await.unwrap(), (2 * EACH) as u64);
    });
}
