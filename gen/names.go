package gen

// Short names for the generated types that agent code spells. This file is
// written by hand (go generate writes only spiagent.go, so it survives
// `make check-gen`); each name is an alias, so the two spellings are the
// same type. Add an alias here rather than spelling a long name twice.
type (
	Crypto = SpiagentCrypto_Crypto

	IsakmpGlobal          = SpiagentCrypto_Crypto_Isakmp_Config
	IsakmpGlobalState     = SpiagentCrypto_Crypto_Isakmp_State
	RecoveryLimits        = SpiagentCrypto_Crypto_Isakmp_InvalidSpiRecoveryLimits_Config
	RecoveryLimitsState   = SpiagentCrypto_Crypto_Isakmp_InvalidSpiRecoveryLimits_State
	IsakmpPolicy          = SpiagentCrypto_Crypto_Isakmp_Policies_Policy
	IsakmpPolicyConfig    = SpiagentCrypto_Crypto_Isakmp_Policies_Policy_Config
	IsakmpKey             = SpiagentCrypto_Crypto_Isakmp_Keys_Key
	IsakmpKeyConfig       = SpiagentCrypto_Crypto_Isakmp_Keys_Key_Config
	IsakmpKeyState        = SpiagentCrypto_Crypto_Isakmp_Keys_Key_State
	IsakmpSA              = SpiagentCrypto_Crypto_Isakmp_Sas_Sa
	IsakmpSAState         = SpiagentCrypto_Crypto_Isakmp_Sas_Sa_State
	TransformSet          = SpiagentCrypto_Crypto_TransformSets_TransformSet
	TransformSetConfig    = SpiagentCrypto_Crypto_TransformSets_TransformSet_Config
	AccessList            = SpiagentCrypto_Crypto_AccessLists_AccessList
	AccessListEntry       = SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry
	AccessListEntryConfig = SpiagentCrypto_Crypto_AccessLists_AccessList_Entries_Entry_Config
	CryptoMap             = SpiagentCrypto_Crypto_CryptoMaps_CryptoMap
	CryptoMapEntry        = SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_Entries_Entry
	CryptoMapEntryConfig  = SpiagentCrypto_Crypto_CryptoMaps_CryptoMap_Entries_Entry_Config
	Interface             = SpiagentCrypto_Crypto_Interfaces_Interface
	InterfaceConfig       = SpiagentCrypto_Crypto_Interfaces_Interface_Config
	InterfaceState        = SpiagentCrypto_Crypto_Interfaces_Interface_State
	IPsecSA               = SpiagentCrypto_Crypto_Ipsec_Sas_Sa
	IPsecSAState          = SpiagentCrypto_Crypto_Ipsec_Sas_Sa_State
	InvalidSPIState       = SpiagentCrypto_Crypto_InvalidSpi_State
	InvalidSPIEventState  = SpiagentCrypto_Crypto_InvalidSpi_LastEvent_State
)
